"""What the repository holds for an instance (``pitr list``) and how healthy that is
(``pitr status``, monitoring-plugin exit codes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pitr.catalog import Catalog
from pitr.catalog.segments import SegmentRun
from pitr.config import StatusSettings
from pitr.planner import window, windows_of
from pitr.planner.common import without_full
from pitr.timeutil import format_time, from_microseconds


def stream_coverage(run: SegmentRun) -> dict[str, Any]:
    """A stream's logs in one line: first and last, how many, how big, which commit times."""
    names = run.column("name")
    lows = [v for v in run.column("min_commit") if v is not None]
    highs = [v for v in run.column("max_commit") if v is not None]
    return {
        "stream": run.stream,
        "first": names[0],
        "last": names[-1],
        "logs": len(names),
        "bytes": sum(run.column("object_size")),
        "first_commit": format_time(from_microseconds(min(lows) if lows else None)),
        "last_commit": format_time(from_microseconds(max(highs) if highs else None)),
    }


def describe(catalog: Catalog) -> dict[str, Any]:
    """``pitr list --json``: backups, log coverage per stream, the recoverable window (and
    the window of each timeline or GTID domain)."""
    return {
        "instance": catalog.instance,
        "datastore": catalog.engine,
        "backups": [
            {
                "id": b.id,
                "type": b.type,
                "parent": b.parent,
                "start": format_time(b.start_time),
                "end": format_time(b.end_time),
                "bytes": b.bytes,
                "raw_bytes": b.raw_bytes,
                "stream": b.stream,
                "system": b.system,
                "server_major": b.server_major,
                "start_position": b.start,
                "end_position": b.end,
            }
            for b in catalog.backups
        ],
        "logs": [stream_coverage(run) for _, run in sorted(catalog.streams.items()) if len(run)],
        "window": window(catalog).to_dict(),
        "windows": [w.to_dict() for w in windows_of(catalog)],
    }


STATES = ("OK", "WARN", "CRIT")


@dataclass(frozen=True)
class Check:
    name: str
    state: str
    detail: str
    age_seconds: float | None = None


def _grade(age: float, warn: float, crit: float) -> str:
    return "CRIT" if age >= crit else "WARN" if age >= warn else "OK"


def newest_log_time(catalog: Catalog) -> datetime | None:
    """When the newest log was archived (or its last commit, if that is later)."""
    best: datetime | None = None
    for run in catalog.streams.values():
        if not len(run):
            continue
        seg = run[len(run) - 1]
        archived = seg.extra.get("archived_at")
        for moment in (seg.max_commit, datetime.fromisoformat(archived) if archived else None):
            if moment is not None and (best is None or moment > best):
                best = moment
    return best


def newest_log_system(catalog: Catalog) -> str | None:
    """The system that wrote the most recently archived log."""
    newest: tuple[str, str] | None = None
    for run in catalog.streams.values():
        if len(run):
            seg = run[len(run) - 1]
            candidate = (str(seg.extra.get("archived_at") or ""), seg.system)
            newest = candidate if newest is None else max(newest, candidate)
    return newest[1] if newest else None


def health(catalog: Catalog, thresholds: StatusSettings, now: datetime) -> list[Check]:
    checks = []
    system = newest_log_system(catalog) if catalog.engine == "postgresql" else None
    problem = without_full(catalog, system) if system else None
    if problem:
        checks.append(Check("system", "CRIT", f"{problem}; take a new full backup"))
    if catalog.backups:
        newest = catalog.backups[-1]
        age = (now - newest.end_time).total_seconds()
        state = _grade(
            age, thresholds.backup_warn_hours * 3600, thresholds.backup_crit_hours * 3600
        )
        checks.append(Check("backup", state, f"last backup {newest.id}, {_ago(age)}", age))
    else:
        checks.append(Check("backup", "CRIT", "no backup in the repository"))
    last = newest_log_time(catalog)
    if last is None:
        checks.append(Check("archive", "CRIT", "no log archived"))
    else:
        lag = max(0.0, (now - last).total_seconds())
        state = _grade(
            lag, thresholds.archive_warn_minutes * 60, thresholds.archive_crit_minutes * 60
        )
        checks.append(Check("archive", state, f"newest log archived {_ago(lag)}", lag))
    return checks


def worst(checks: list[Check]) -> str:
    return max((c.state for c in checks), key=STATES.index, default="OK")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
