"""What ``recover`` and ``restore`` share across engines: the one ``recovery`` result (its
document: ``pitr.cli.documents.recovery``), the refusal of a plan that is not recoverable, and
the clean-up of a directory pitr was restoring into."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.errors import NotRecoverable
from pitr.planner.plan import Plan


@dataclass(frozen=True)
class Recovered:
    """A recovered (``ACTIVE``) or restored (``RESTORED``) data directory: where, from which
    backups, and where replay ended (``reached``: ``lsn``, ``xid``, ``gtid``; PostgreSQL adds
    ``timeline`` and ``last_commit``)."""

    instance: str
    plan: Plan
    datadir: Path
    reached: dict[str, Any] = field(default_factory=dict)
    point_in_time: datetime | None = None
    port: int | None = None
    status: str = "ACTIVE"
    previous_datadir: Path | None = None
    previous_binlogs: Path | None = None  # MariaDB/MySQL: binlogs kept outside the datadir


def require_recoverable(plan: Plan) -> None:
    """Refuse, before anything is touched, a plan that does not reach its target."""
    if not plan.recoverable:
        raise NotRecoverable(
            f"not recoverable: {plan.problems[0]}",
            hint=f"recoverable window: {plan.window.describe()}; nothing was changed",
        )


def clean(dest: Path, created: bool) -> None:
    """Remove what pitr wrote into ``dest`` (the directory itself only if pitr created it)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
    elif dest.is_dir():
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
