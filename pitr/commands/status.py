"""``pitr status``: how healthy the instance's backups and archiving are, graded like a
monitoring plugin (exit 0 OK, 1 WARN, 2 CRIT)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pitr.catalog import Catalog
from pitr.catalog.store import open_catalog
from pitr.config.settings import InstanceSettings, Settings, StatusSettings
from pitr.domain.sizes import human_bytes
from pitr.domain.timeutil import utcnow
from pitr.engines.base import SlotLag
from pitr.errors import PitrError
from pitr.planner import window
from pitr.planner.common import without_full
from pitr.planner.plan import Window

log = logging.getLogger("pitr.status")
STATES = ("OK", "WARN", "CRIT")
MB = 1024 * 1024


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


def slot_lag(settings: Settings, inst: InstanceSettings) -> SlotLag | None:
    """The instance's ``archive --follow`` slot as its server shows it; None when it has
    none or the server cannot be asked (a stopped server holds no more WAL back)."""
    from pitr.engines import engine_for

    try:
        return engine_for(settings, inst).slot_lag()
    except PitrError as exc:
        log.debug("instance %s: replication slot not read: %s", inst.name, exc.message)
        return None


def slot_check(lag: SlotLag, thresholds: StatusSettings) -> Check:
    """The WAL the slot holds on the server, graded (docs/monitoring.md); CRIT once WAL it
    needed is gone (``wal_status`` lost)."""
    held = lag.retained_bytes
    where = f"replication slot {lag.name} ({'active' if lag.active else 'inactive'})"
    if lag.wal_status == "lost":
        return Check("slot", "CRIT", f"{where}: WAL it needed was removed; restart the follower "
                     "and take a new full backup")  # fmt: skip
    if held is None:
        return Check("slot", "WARN", f"{where}: reserves no WAL")
    state = _grade(held, thresholds.slot_warn_mb * MB, thresholds.slot_crit_mb * MB)
    return Check("slot", state, f"{where}: holds {human_bytes(held)} of WAL")


def worst(checks: list[Check]) -> str:
    return max((c.state for c in checks), key=STATES.index, default="OK")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@dataclass(frozen=True)
class Health:
    """The worst state, each check, and the recoverable window."""

    state: str
    checks: list[Check]
    window: Window

    @property
    def exit_code(self) -> int:
        return STATES.index(self.state)


def status(settings: Settings, instance: str | None) -> Health:
    inst = settings.instance(instance)
    catalog = open_catalog(settings, inst).load_current()  # the streamed partial segment too
    checks = health(catalog, settings.status, utcnow())
    lag = slot_lag(settings, inst)
    if lag is not None:
        checks.append(slot_check(lag, settings.status))
    return Health(worst(checks), checks, window(catalog))
