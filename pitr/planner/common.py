"""What every engine's planner shares: choosing backups, assembling steps and problems."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, TimelineHistory, Transaction
from pitr.domain.targets import Target
from pitr.planner.plan import Plan, Step, Stop, Window

#: transactions of the segments the caller fetched (see ``documents_needed``), by
#: ``segment.ref``: log names repeat across streams
Located = Mapping[str, Sequence[Transaction]]


@dataclass(frozen=True)
class Chain:
    """A full backup and, optionally, the differential restored on top of it."""

    full: Backup
    diff: Backup | None

    @property
    def last(self) -> Backup:
        """The backup whose consistent point replay starts from."""
        return self.diff or self.full


def fulls(catalog: Catalog, system: str | None = None) -> list[Backup]:
    """Full backups, oldest first (by consistent point, then id)."""
    found = [b for b in catalog.backups if b.type == "full"]
    if system is not None:
        found = [b for b in found if b.system == system]
    return sorted(found, key=lambda b: (b.end_time, b.id))


def without_full(catalog: Catalog, system: str) -> str | None:
    """Why ``system`` cannot be recovered although the repository has full backups: they are
    all of other systems (a PostgreSQL cluster after ``pg_upgrade`` or a new ``initdb`` has a
    new system identifier; no backup of the old one replays its WAL). None when it has a
    full backup, or when there is none at all."""
    others = sorted({b.system for b in fulls(catalog)} - {system})
    if not others or fulls(catalog, system):
        return None
    return (
        f"system {system} has no full backup: the repository's full backups are of system "
        f"{', '.join(others)} (before a pg_upgrade or a new initdb) and cannot replay its WAL"
    )


def differentials_of(catalog: Catalog, full: Backup) -> list[Backup]:
    return sorted(
        (b for b in catalog.backups if b.type == "diff" and b.parent == full.id),
        key=lambda b: (b.end_time, b.id),
    )


def choose_chain(
    catalog: Catalog, usable: Callable[[Backup], bool], system: str | None = None
) -> Chain | None:
    """The newest full for which ``usable`` holds, then its newest usable differential."""
    for full in reversed(fulls(catalog, system)):
        if usable(full):
            diffs = [d for d in differentials_of(catalog, full) if usable(d)]
            return Chain(full, diffs[-1] if diffs else None)
    return None


def backup_objects(backup: Backup, missing: frozenset[str]) -> list[str]:
    return [o.key for o in backup.objects if o.key in missing]


def chain_problems(chain: Chain, missing: frozenset[str]) -> list[str]:
    problems = []
    for backup in (chain.full, chain.diff):
        if backup is not None:
            problems += [
                f"backup {backup.id}: object {key} is missing from the repository"
                for key in backup_objects(backup, missing)
            ]
    return problems


def refuse(
    catalog: Catalog,
    target: Target,
    problems: Iterable[str],
    window: Window,
    timeline: int | None = None,
) -> Plan:
    return Plan(
        instance=catalog.instance,
        datastore=catalog.engine,
        target=target,
        recoverable=False,
        window=window,
        problems=tuple(problems),
        timeline=timeline,
    )


def assemble(
    catalog: Catalog,
    target: Target,
    chain: Chain,
    segments: Sequence[LogSegment],
    window: Window,
    stop: Stop,
    *,
    start: str,
    stop_text: str,
    timeline: int | None = None,
    notes: Iterable[str] = (),
    histories: Iterable[TimelineHistory] = (),
) -> Plan:
    steps = [Step("restore_full", chain.full.objects, backup=chain.full)]
    if chain.diff is not None:
        steps.append(Step("apply_diff", chain.diff.objects, backup=chain.diff))
    steps.append(
        Step(
            "replay_logs",
            tuple(s.object for s in segments),
            segments=tuple(segments),
            start=start,
            stop=stop_text,
        )
    )
    return Plan(
        instance=catalog.instance,
        datastore=catalog.engine,
        target=target,
        recoverable=True,
        steps=tuple(steps),
        window=window,
        timeline=timeline,
        stop=stop,
        notes=tuple(notes),
        histories=tuple(histories),
    )
