"""PostgreSQL planning: timelines, WAL segments, and where replay stops.

Replay follows a *timeline path*: from the target timeline's history file, the list of
(timeline, begin LSN, switch LSN) legs that lead to it. For every WAL segment on the way,
PostgreSQL reads the file of the newest timeline on the path that began before the segment
ends (the segment holding a switch point is read from the new timeline); the planner demands
exactly those files, in that order, from the backup's start LSN through the segment holding
the stop record.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, TimelineHistory, Transaction
from pitr.catalog.segments import SegmentRun
from pitr.domain.positions import format_lsn, segment_name, stream_of
from pitr.domain.targets import Target
from pitr.planner.common import (
    Chain,
    Located,
    assemble,
    chain_problems,
    choose_chain,
    refuse,
)
from pitr.planner.plan import Plan, Stop, Window

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Leg:
    """Part of a timeline path: ``timeline`` from ``begin`` up to ``end`` (None: open)."""

    timeline: int
    begin: int
    end: int | None


Path = tuple[Leg, ...]


def timelines(catalog: Catalog) -> list[int]:
    found = {int(name, 16) for name in catalog.streams} | {h.timeline for h in catalog.histories}
    return sorted(found)


def timeline_path(catalog: Catalog, timeline: int) -> Path | None:
    """The legs leading to ``timeline``; None when its history file is not archived."""
    if timeline == 1:
        return (Leg(1, 0, None),)
    history = next((h for h in catalog.histories if h.timeline == timeline), None)
    if history is None:
        return None
    legs, begin = [], 0
    for parent, switch, _text in history.switches:
        legs.append(Leg(parent, begin, switch))
        begin = switch
    legs.append(Leg(timeline, begin, None))
    return tuple(legs)


def histories_followed(catalog: Catalog, timeline: int) -> tuple[TimelineHistory, ...]:
    """The history files PostgreSQL reads to follow ``timeline``: its own, which lists every
    ancestor (timeline 1 has none). Recovery fetches it through ``restore_command``."""
    history = next((h for h in catalog.histories if h.timeline == timeline), None)
    return (history,) if history is not None and timeline != 1 else ()


def leg_of(path: Path, timeline: int) -> Leg | None:
    return next((leg for leg in path if leg.timeline == timeline), None)


def usable_on(path: Path, backup: Backup) -> bool:
    """A backup lies on the path when it began and ended on one of its legs."""
    leg = leg_of(path, int(backup.stream, 16))
    return (
        leg is not None
        and leg.begin <= backup.start_key
        and (leg.end is None or backup.end_key <= leg.end)
    )


class Walker:
    """Follows a timeline path segment by segment, using integer keys only."""

    def __init__(self, catalog: Catalog, path: Path, segment_size: int) -> None:
        self.catalog = catalog
        self.path = path
        self.size = segment_size

    def timeline_at(self, start: int) -> int:
        end = start + self.size
        return next(leg.timeline for leg in reversed(self.path) if leg.begin < end)

    def locate(self, start: int) -> tuple[int, SegmentRun | None, int | None]:
        """Timeline, stream and index of the segment PostgreSQL reads at ``start``."""
        tli = self.timeline_at(start)
        run = self.catalog.streams.get(stream_of(tli))
        i = run.index_containing(start) if run is not None else None
        if run is not None and i is not None and run.start_keys[i] != start:
            i = None
        return tli, run, i

    def align(self, key: int) -> int:
        return key - key % self.size

    def _horizon(self, position: int) -> int | None:
        """The first leg begin beyond ``position``'s segment: ``timeline_at`` answers the same
        for every position from ``position`` while ``position + size`` stays at or below it."""
        end = position + self.size
        return min((leg.begin for leg in self.path if leg.begin >= end), default=None)

    def reach(self, start: int, system: str, missing: frozenset[str]) -> int:
        """End key of the contiguous run of usable segments from ``start``."""
        position = self.align(start)
        while True:
            _tli, run, i = self.locate(position)
            if run is None or i is None:
                return position
            systems = run.column("system")
            keys = run.column("object_key") if missing else None
            starts, ends, count = run.start_keys, run.end_keys, len(run)
            tli = int(run.stream, 16)
            checked: int | None = None  # where ``timeline_at`` last answered ``tli``
            horizon: int | None = None
            # Fast path: consecutive segments of one stream, while the timeline stays.
            while i < count and starts[i] == position:
                if systems[i] != system or (keys is not None and keys[i] in missing):
                    return position
                position = ends[i]
                if (
                    checked is None
                    or position < checked
                    or (horizon is not None and position + self.size > horizon)
                ):
                    if self.timeline_at(position) != tli:
                        break
                    checked, horizon = position, self._horizon(position)
                i += 1
            else:
                return position

    def segments(
        self, start: int, stop: int, system: str, missing: frozenset[str]
    ) -> tuple[list[LogSegment], list[str]]:
        """Every segment from ``start`` through the one holding ``stop``, and what is wrong."""
        found: list[LogSegment] = []
        problems: list[str] = []
        position = self.align(start)
        while position <= stop:
            tli, run, i = self.locate(position)
            name = segment_name(tli, position, self.size)
            where = f"(timeline {tli}, {format_lsn(position)})"
            if run is None or i is None:
                problems.append(f"missing WAL segment {name} {where}")
            else:
                seg = run[i]
                if seg.object.key in missing:
                    problems.append(
                        f"missing WAL segment {name} {where}: its data object {seg.object.key} "
                        "is gone (the index document remains)"
                    )
                elif seg.system != system:
                    problems.append(
                        f"WAL segment {name} belongs to another system ({seg.system}, not {system})"
                    )
                else:
                    found.append(seg)
            position += self.size
        return found, problems

    def last_commit_before(self, end: int) -> tuple[datetime | None, int | None]:
        """Time and key of the last commit (or restore point) in segments before ``end``.

        However long the WAL without any commit (a bulk load, an index build), by bisection
        over each leg's segments that hold one: leg ``n`` is read from
        ``align(leg.begin)`` (0 for the first) up to where the next leg's reading starts."""
        position = self.align(end - 1)  # the last segment start to consider
        for n in range(len(self.path) - 1, -1, -1):
            leg = self.path[n]
            low = self.align(leg.begin) if n else 0
            if position < low:
                continue
            run = self.catalog.streams.get(stream_of(leg.timeline))
            if run is not None:
                with_commits = run.with_commits()
                starts = run.start_keys
                j = bisect.bisect_left(with_commits, bisect.bisect_right(starts, position)) - 1
                while j >= 0 and starts[with_commits[j]] >= low:
                    i = with_commits[j]
                    if starts[i] % self.size == 0:  # a segment PostgreSQL would read
                        seg = run[i]
                        return seg.max_commit, seg.last_key
                    j -= 1
            position = low - self.size
        return None, None

    def path_end(self) -> int:
        """End key of the last archived segment PostgreSQL would read on this path."""
        end = 0
        for leg in self.path:
            run = self.catalog.streams.get(stream_of(leg.timeline))
            if run is None or not len(run):
                continue
            limit = leg.end if leg.end is not None else run.end_keys[-1]
            i = run.index_containing(limit - 1) if leg.end is not None else len(run) - 1
            if i is None:
                i = run.first_index_at_or_after(limit) - 1
            if i >= 0:
                end = max(end, min(run.end_keys[i], self.align(limit - 1) + self.size))
        return end


def segment_size_of(catalog: Catalog) -> int:
    for backup in catalog.backups:
        size = backup.engine_meta.get("wal_segment_size")
        if size:
            return int(size)
    for run in catalog.streams.values():
        if len(run):
            return run.end_keys[0] - run.start_keys[0]
    return DEFAULT_SEGMENT_SIZE


def window_on(
    catalog: Catalog, walker: Walker, system: str | None, missing: frozenset[str]
) -> Window:
    """Oldest consistent point to last archived commit, over backups usable on the path."""
    earliest = latest = None
    run_start, run_end = -1, -1  # the contiguous WAL run last walked
    last_before: dict[int, datetime | None] = {}  # end -> last commit before it
    for backup in sorted(catalog.backups, key=lambda b: b.start_key):
        if backup.type != "full" or not usable_on(walker.path, backup):
            continue
        if system is not None and backup.system != system:
            continue
        start = walker.align(backup.start_key)
        if not run_start <= start < run_end:  # a backup inside the run reaches its end too
            run_start, run_end = start, walker.reach(start, backup.system, missing)
        end = run_end
        if end <= backup.end_key:
            continue  # never consistent: WAL up to the backup's stop point is missing
        if earliest is None or backup.end_time < earliest:
            earliest = backup.end_time
        if end not in last_before:
            last_before[end] = walker.last_commit_before(end)[0]
        last = last_before[end]
        candidate = max(last, backup.end_time) if last else backup.end_time
        latest = candidate if latest is None else max(latest, candidate)
    return Window(earliest, latest)


def documents_needed(catalog: Catalog, target: Target) -> list[LogSegment]:
    """Index documents to fetch before planning: segments whose xid range holds the xid."""
    if target.kind != "xid" or target.xid is None:
        return []
    found = []
    for run in catalog.streams.values():
        lows, highs = run.column("xid_min"), run.column("xid_max")
        for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
            if low is not None and low <= target.xid <= high:
                found.append(run[i])
    return found


@dataclass(frozen=True)
class _Point:
    """Where a position target lies: its timeline and key, and the transaction if known."""

    timeline: int
    key: int
    transaction: Transaction | None = None


def _own_leg_begin(catalog: Catalog, timeline: int) -> int:
    path = timeline_path(catalog, timeline)
    return path[-1].begin if path else 0


def _locate_point(catalog: Catalog, target: Target, located: Located) -> list[_Point]:
    """Every timeline on whose own leg the target record lies."""
    points: list[_Point] = []
    for stream, run in catalog.streams.items():
        tli = int(stream, 16)
        begin = _own_leg_begin(catalog, tli)
        if target.kind == "lsn" and target.lsn is not None:
            i = run.index_containing(target.lsn)
            if i is not None and target.lsn >= begin:
                points.append(_Point(tli, target.lsn))
        elif target.kind == "restore_point":
            for seg in (run[i] for i, p in enumerate(run.column("restore_points")) if p):
                for rp in seg.restore_points:
                    if rp.name == target.name and rp.key >= begin:
                        points.append(_Point(tli, rp.key))
        elif target.kind == "xid":
            # Only the segments whose documents were fetched can hold it (``seg.ref`` is
            # ``<run.stream>/<name>``): skip parsing the other rows.
            prefix = f"{run.stream}/"
            names = {ref[len(prefix) :] for ref in located if ref.startswith(prefix)}
            fetched = [i for i, name in enumerate(run.column("name")) if name in names]
            for seg in (run[i] for i in fetched):
                for tx in located.get(seg.ref, ()):
                    if tx.xid == target.xid and tx.key >= begin:
                        points.append(_Point(tli, tx.key, tx))
    if target.kind == "lsn" and target.lsn is not None and not points:
        # Not in any archived segment: place it anyway, so that a missing segment is named.
        owners = [t for t in timelines(catalog) if _own_leg_begin(catalog, t) <= target.lsn]
        if owners:
            points.append(_Point(max(owners), target.lsn))
    return points


def plan_wal(catalog: Catalog, target: Target, located: Located, missing: frozenset[str]) -> Plan:
    size = segment_size_of(catalog)
    known = timelines(catalog)
    points: list[_Point] = []
    if target.kind in ("lsn", "xid", "restore_point"):
        points = _locate_point(catalog, target, located)
    tli = _choose_timeline(catalog, target, known, points)
    if tli is None:
        return refuse(
            catalog, target, ["the repository holds no WAL and no backup"], Window(None, None)
        )
    path = timeline_path(catalog, tli)
    if path is None:
        return refuse(
            catalog,
            target,
            [f"missing timeline history file {tli:08X}.history (needed to follow timeline {tli})"],
            Window(None, None),
            tli,
        )
    followed = histories_followed(catalog, tli)
    gone = [h for h in followed if h.object.key in missing]
    if gone:
        return refuse(
            catalog,
            target,
            [
                f"missing timeline history file {h.timeline:08X}.history (needed to follow "
                f"timeline {tli}): its data object {h.object.key} is gone (the index document "
                "remains)"
                for h in gone
            ],
            Window(None, None),
            tli,
        )
    walker = Walker(catalog, path, size)
    window = window_on(catalog, walker, None, missing)
    point = next((p for p in points if p.timeline in {leg.timeline for leg in path}), None)
    if target.kind in ("lsn", "xid", "restore_point") and point is None:
        what = {"lsn": "WAL location", "xid": "transaction", "restore_point": "restore point"}
        return refuse(
            catalog,
            target,
            [
                f"{what[target.kind]} {target.value} is not in the archived WAL of timeline {tli} "
                f"(recoverable window: {window.describe()})"
            ],
            window,
            tli,
        )
    return _plan_on_path(catalog, target, walker, window, point, missing, followed)


def _choose_timeline(
    catalog: Catalog, target: Target, known: Sequence[int], points: Sequence[_Point]
) -> int | None:
    choice = target.timeline
    if isinstance(choice, int):
        return choice
    if not known:
        return None
    if choice == "latest" or target.kind == "latest":
        return known[-1]
    if choice == "current":
        newest = sorted(catalog.backups, key=lambda b: (b.end_time, b.id))
        return int(newest[-1].stream, 16) if newest else known[-1]
    if points:
        return max(p.timeline for p in points)
    if target.kind == "time" and target.time is not None:
        born = {h.timeline: h.created for h in catalog.histories}
        eligible = [t for t in known if t == 1 or (t in born and born[t] <= target.time)]
        return max(eligible) if eligible else known[0]
    return known[-1]


def _plan_on_path(
    catalog: Catalog,
    target: Target,
    walker: Walker,
    window: Window,
    point: _Point | None,
    missing: frozenset[str],
    histories: tuple[TimelineHistory, ...],
) -> Plan:
    tli = walker.path[-1].timeline

    def usable(b: Backup) -> bool:
        if not usable_on(walker.path, b):
            return False
        if point is not None:
            return b.end_key <= point.key
        if target.kind == "time" and target.time is not None:
            return b.end_time <= target.time
        return True

    chain = choose_chain(catalog, usable)
    if chain is None:
        return refuse(
            catalog,
            target,
            [
                f"no backup on timeline {tli} ends before the target {target.describe()} "
                f"(recoverable window: {window.describe()})"
            ],
            window,
            tli,
        )
    start = chain.last.start_key
    stop = _stop(chain, target, walker, point)
    if isinstance(stop, str):
        return refuse(catalog, target, [stop], window, tli)
    assert stop.key is not None
    segments, problems = walker.segments(start, stop.key, chain.full.system, missing)
    problems = chain_problems(chain, missing) + problems
    if problems:
        return refuse(catalog, target, problems, window, tli)
    stop_text = "end of the archived WAL" if stop.at_end else format_lsn(stop.key)
    return assemble(
        catalog,
        target,
        chain,
        segments,
        window,
        stop,
        start=format_lsn(start),
        stop_text=stop_text,
        timeline=tli,
        histories=histories,
    )


def _stop(chain: Chain, target: Target, walker: Walker, point: _Point | None) -> Stop | str:
    """Where replay ends (a key within the segment that must be read last), or why the target
    lies outside what is archived. Gaps on the way are the caller's to name."""
    stream = stream_of(walker.path[-1].timeline)
    end = walker.path_end()
    at_end = Stop(stream, max(end - 1, chain.last.end_key), None, at_end=True)
    if target.kind == "latest":
        return at_end
    last_time, last_key = walker.last_commit_before(end)
    if point is not None:
        if target.kind == "lsn" and (last_key is None or point.key > last_key):
            last = format_lsn(last_key) if last_key is not None else "none"
            return f"target {target.describe()} is after the last archived commit ({last})"
        return Stop(stream, point.key, format_lsn(point.key), point.transaction)
    assert target.time is not None
    if last_time is None or target.time > last_time:
        last = last_time.isoformat() if last_time else "none"
        return f"target {target.describe()} is after the last archived commit ({last})"
    key = _first_commit_after(walker, chain.last.start_key, end, target)
    if key is None:  # every archived commit is at or before the target: replay it all
        return at_end
    return Stop(stream, key, format_lsn(key))


def _first_commit_after(walker: Walker, start: int, end: int, target: Target) -> int | None:
    """Start key of the first segment on the path (from ``start``) holding a commit after the
    target time, or at it when the target is exclusive."""
    assert target.time is not None
    for n, leg in enumerate(walker.path):
        # The segment holding a switch point is read from the next timeline.
        leg_end = walker.align(leg.end) if leg.end is not None else end
        low = max(walker.align(start), walker.align(leg.begin) if n else 0)
        run = walker.catalog.streams.get(stream_of(leg.timeline))
        if run is None or low >= leg_end:
            continue
        first = run.first_index_at_or_after(low)
        found = run.first_after(target.time, inclusive=target.inclusive)
        if found is None:
            continue
        for k in range(max(found, first), len(run)):
            if run.start_keys[k] >= leg_end:
                break
            moment = run[k].max_commit
            if moment is not None and (
                moment > target.time or (not target.inclusive and moment >= target.time)
            ):
                return run.start_keys[k]
    return None
