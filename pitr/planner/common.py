"""What every engine's planner shares: choosing backups, assembling steps and problems."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, TimelineHistory, Transaction
from pitr.domain.targets import Target
from pitr.planner.plan import Plan, Step, Stop, Window

#: transactions of the segments the caller fetched (see ``documents_needed``), by
#: ``segment.ref``: log names repeat across streams
Located = Mapping[str, Sequence[Transaction]]


@dataclass(frozen=True)
class Chain:
    """A full backup and the links restored on top of it, oldest first: at most one
    differential, then block-level incrementals (PostgreSQL), each the child of the one
    before. ``broken`` names why a newer chain the target needs cannot be used."""

    full: Backup
    links: tuple[Backup, ...] = ()
    broken: tuple[str, ...] = ()

    @property
    def diff(self) -> Backup | None:
        return next((b for b in self.links if b.type == "diff"), None)

    @property
    def increments(self) -> tuple[Backup, ...]:
        return tuple(b for b in self.links if b.type == "incr")

    @property
    def last(self) -> Backup:
        """The backup whose consistent point replay starts from."""
        return self.links[-1] if self.links else self.full


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


def lineage(catalog: Catalog, backup: Backup) -> tuple[list[Backup], str | None]:
    """``backup`` and its ancestors up to its full, full first; or why that chain is broken
    (a parent not in the catalog, of another system, of the wrong type, or not before its
    child)."""
    by_id = {b.id: b for b in catalog.backups}
    path = [backup]
    while path[0].type != "full":
        child = path[0]
        parent = by_id.get(child.parent or "")
        why = _link_problem(child, parent)
        if why is not None:
            return path, why
        assert parent is not None
        path.insert(0, parent)
    return path, None


def _link_problem(child: Backup, parent: Backup | None) -> str | None:
    name = f"backup {child.id} ({child.type})"
    if parent is None:
        return f"{name}: its parent {child.parent} is missing from the catalog (broken chain)"
    if parent.system != child.system:
        return f"{name}: its parent {parent.id} is of another system (broken chain)"
    if child.type == "diff" and parent.type != "full":
        return f"{name}: its parent {parent.id} is not a full backup (broken chain)"
    if parent.end_time > child.start_time:
        return f"{name}: its parent {parent.id} does not end before it starts (broken chain)"
    return None


def choose_chain(
    catalog: Catalog, usable: Callable[[Backup], bool], system: str | None = None
) -> Chain | None:
    """The newest usable backup of the newest usable full's line (itself, a differential or
    an incremental) with the links from that full to it. A newer usable backup whose own
    chain is broken refuses the plan (``broken``) rather than silently replaying from an
    older backup."""
    for full in reversed(fulls(catalog, system)):
        if not usable(full):
            continue
        newer = [
            b
            for b in catalog.backups
            if b.type != "full" and usable(b) and (b.end_time, b.id) > (full.end_time, full.id)
        ]
        newer = [b for b in newer if system is None or b.system == system]
        for candidate in sorted(newer, key=lambda b: (b.end_time, b.id), reverse=True):
            path, why = lineage(catalog, candidate)
            if why is not None:
                return Chain(full, broken=(why,))
            if path[0].id == full.id:
                return Chain(full, tuple(path[1:]))
        return Chain(full)
    return None


def descends_from(catalog: Catalog, backup: Backup, ancestors: set[str]) -> bool:
    """Is ``backup`` one of ``ancestors`` or a descendant of one of them?"""
    path, _ = lineage(catalog, backup)
    return any(b.id in ancestors for b in path)


def backup_objects(backup: Backup, missing: frozenset[str]) -> list[str]:
    return [o.key for o in backup.objects if o.key in missing]


def chain_problems(chain: Chain, missing: frozenset[str]) -> list[str]:
    problems = list(chain.broken)
    for backup in (chain.full, *chain.links):
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
    for link in chain.links:
        action: Literal["apply_diff", "apply_incr"] = (
            "apply_diff" if link.type == "diff" else "apply_incr"
        )
        steps.append(Step(action, link.objects, backup=link))
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
