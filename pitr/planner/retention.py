"""What the retention policy expires, never shrinking the window below it (pure: the command
in ``pitr.commands.expire`` reads the catalog and deletes).

Which backups to keep is a pure decision (``plan_expiry``): the newest ``full`` fulls, and for
``days`` every full consistent within that many days plus the newest one before them (it is
what makes a target exactly ``days`` ago recoverable). A differential or incremental goes with
the full it descends from: every link a kept backup needs is kept. Logs
go only when no kept backup can need them: WAL before the oldest kept backup's start
(positions are comparable across timelines), binlogs before the file a kept backup starts in,
and binlog streams whose every commit predates every kept backup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment
from pitr.config.settings import RetentionSettings
from pitr.domain.positions import FILE_SHIFT
from pitr.domain.timeutil import from_document
from pitr.errors import UsageError
from pitr.planner.common import descends_from, fulls


@dataclass(frozen=True)
class Expiry:
    keep: tuple[Backup, ...]
    backups: tuple[Backup, ...]  # to delete
    segments: tuple[LogSegment, ...]  # to delete
    orphans: dict[str, list[str]] = field(default_factory=dict)  # unfinished backups' objects

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.backups) + sum(s.object.size for s in self.segments)


def check_policy(policy: RetentionSettings) -> None:
    """Refuse an empty policy before anything is read or locked (it is bad input)."""
    if policy.full is None and policy.days is None:
        raise UsageError(
            "no retention policy is configured: nothing would ever expire",
            hint="set [retention] full = N and/or days = D in pitr.toml",
        )


def kept_fulls(catalog: Catalog, policy: RetentionSettings, now: datetime) -> list[Backup]:
    check_policy(policy)
    all_fulls = fulls(catalog)
    keep: set[str] = set()
    if policy.full is not None:
        keep |= {b.id for b in all_fulls[-policy.full :]}
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        recent = [b for b in all_fulls if b.end_time >= cutoff]
        older = [b for b in all_fulls if b.end_time < cutoff]
        keep |= {b.id for b in recent} | ({older[-1].id} if older else set())
    return [b for b in all_fulls if b.id in keep]


def plan_expiry(
    catalog: Catalog,
    policy: RetentionSettings,
    now: datetime,
    orphans: dict[str, list[str]] | None = None,
) -> Expiry:
    kept_full = kept_fulls(catalog, policy, now)
    kept_ids = {b.id for b in kept_full}
    keep = tuple(b for b in catalog.backups if descends_from(catalog, b, kept_ids))
    gone = tuple(b for b in catalog.backups if b not in keep)
    segments = _expired_logs(catalog, keep) if keep else ()
    return Expiry(keep, gone, segments, dict(orphans or {}))


def _expired_logs(catalog: Catalog, keep: Sequence[Backup]) -> tuple[LogSegment, ...]:
    expired: list[LogSegment] = []
    if catalog.engine == "postgresql":
        oldest = min(b.start_key for b in keep)
        for run in catalog.streams.values():
            expired += [run[i] for i, end in enumerate(run.end_keys) if end <= oldest]
        return tuple(expired)
    first_needed: dict[str, int] = {}
    for b in keep:  # replay starts in the file holding the backup's position
        start = (b.end_key >> FILE_SHIFT) << FILE_SHIFT
        first_needed[b.stream] = min(first_needed.get(b.stream, start), start)
    oldest_time = min(b.start_time for b in keep)
    for stream, run in catalog.streams.items():
        if stream in first_needed:
            limit = first_needed[stream]
            expired += [run[i] for i, end in enumerate(run.end_keys) if end <= limit]
        elif all(_older(s, oldest_time) for s in run):
            expired += list(run)
    return tuple(expired)


def _older(seg: LogSegment, moment: datetime) -> bool:
    """Did everything in ``seg`` happen before ``moment``? (A binlog without transactions —
    one closed right after it was opened — counts by when it was archived.)"""
    newest = seg.max_commit or from_document(seg.extra.get("archived_at"))
    return newest is not None and newest < moment
