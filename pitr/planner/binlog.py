"""MariaDB / MySQL planning: binlog streams, GTID continuity, exact stop positions.

A *stream* is one server's numbered sequence of binlog files (names repeat after a failover or
``RESET MASTER``, so a file is identified by stream and position, never by name alone). Keys
order positions within a stream: ``file number << 40 | byte offset``. Consecutive files must
have consecutive numbers and the GTID state at the end of one must equal the state the next
one starts from; a stream may continue into another whose first file starts from exactly the
GTID state this one ended with.

Stop positions are transaction boundaries taken from pitr's own index (the ``located``
transactions of the segment where replay stops), so a time target is exact to the commit
order, not rounded to the second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, Transaction
from pitr.catalog.segments import SegmentRun
from pitr.domain.gtid import MariaGtid, MariaGtidPosition, MysqlGtid, MysqlGtidSet
from pitr.domain.positions import FILE_SHIFT, file_number, offset_of
from pitr.domain.targets import Target
from pitr.planner.common import (
    Located,
    assemble,
    chain_problems,
    choose_chain,
    refuse,
)
from pitr.planner.plan import Plan, Stop, Window
from pitr.planner.windows import BinlogChain, of_domains


def key_in(seg: LogSegment, offset: int) -> int:
    """The key of byte ``offset`` of the file ``seg``."""
    return (file_number(seg.start_key) << FILE_SHIFT) | offset


class Gtids:
    """GTID questions asked of segment states, for one flavour (MariaDB or MySQL)."""

    def __init__(self, engine: str, target: Target) -> None:
        self.mariadb = engine == "mariadb"
        self.target = target

    def reached(self, state: str | None) -> bool:
        """Does ``state`` include the target GTID(s)?"""
        if state is None or self.target.gtid is None:
            return False
        if self.mariadb:
            return MariaGtidPosition.parse(state).covers(MariaGtidPosition.parse(self.target.gtid))
        return MysqlGtid.parse(self.target.gtid) in MysqlGtidSet.parse(state)

    def backup_usable(self, state: str | None, ends_at_target: bool = False) -> bool:
        """May replay start from a backup at ``state`` and still stop at the target?
        (``ends_at_target``: the backup's position is the end of the target's transaction.)"""
        if self.target.gtid is None:
            return True
        if self.mariadb:
            have = MariaGtidPosition.parse(state or "")
            for want in MariaGtidPosition.parse(self.target.gtid).gtids:
                got = have.get(want.domain)
                limit = want.seq if self.target.inclusive else want.seq - 1
                if got is not None and got.seq > limit:
                    return False
            return True
        # A MySQL set holding the target says nothing of what came after it (other sources,
        # other tags, interleaved): only the backup's position does.
        if MysqlGtid.parse(self.target.gtid) not in MysqlGtidSet.parse(state or ""):
            return True
        return self.target.inclusive and ends_at_target

    def advance(self, state: str | None, gtid: str | None) -> str | None:
        """The state after a transaction with ``gtid`` (unchanged without one)."""
        if gtid is None:
            return state
        if self.mariadb:
            return str(MariaGtidPosition.parse(state or "").advance(MariaGtid.parse(gtid)))
        return str(MysqlGtidSet.parse(state or "").add(MysqlGtid.parse(gtid)))

    def named(self, gtid: str | None) -> bool:
        """Is ``gtid`` one of the target's GTIDs (exactly: domain, server and number)?"""
        if gtid is None or self.target.gtid is None:
            return False
        if self.mariadb:
            return MariaGtid.parse(gtid) in MariaGtidPosition.parse(self.target.gtid).gtids
        return MysqlGtid.parse(gtid) == MysqlGtid.parse(self.target.gtid)

    def same_state(self, a: str | None, b: str | None) -> bool:
        if a is None or b is None:
            return True  # not recorded: only file numbers speak for continuity
        if self.mariadb:
            return MariaGtidPosition.parse(a) == MariaGtidPosition.parse(b)
        return MysqlGtidSet.parse(a) == MysqlGtidSet.parse(b)


def _stream_of_backup(catalog: Catalog, backup: Backup) -> SegmentRun | None:
    return catalog.streams.get(backup.stream)


def chain_from(
    catalog: Catalog, backup: Backup, gtids: Gtids, missing: frozenset[str]
) -> tuple[list[LogSegment], list[str]]:
    """The contiguous segments from the file holding the backup's position onwards, and the
    first problem that ends the run (a missing file, a broken GTID state, a foreign system)."""
    run = _stream_of_backup(catalog, backup)
    if run is None:
        return [], [f"no binlog of stream {backup.stream} is archived"]
    i = run.index_containing(backup.end_key)
    if i is None:
        i = run.first_index_at_or_after(backup.end_key)
        if i >= len(run) or file_number(run.start_keys[i]) != file_number(backup.end_key):
            return [], [
                f"missing binlog {backup.end.split(':')[0]} (holding the position of "
                f"backup {backup.id}, {backup.end})"
            ]
    found: list[LogSegment] = []
    while True:
        seg = run[i]
        if seg.object.key in missing:
            return found, [
                f"missing binlog {seg.name} (stream {run.stream}): its data object "
                f"{seg.object.key} is gone (the index document remains)"
            ]
        if seg.system != backup.system:
            return found, [f"binlog {seg.name} belongs to another system ({seg.system})"]
        if found and not gtids.same_state(found[-1].gtids_after, seg.gtids_before):
            return found, [
                f"binlog {seg.name} does not start where {found[-1].name} ended "
                f"(GTID state {seg.gtids_before} after {found[-1].gtids_after})"
            ]
        found.append(seg)
        if i + 1 < len(run):
            if file_number(run.start_keys[i + 1]) != file_number(seg.start_key) + 1:
                return found, [_gap(seg, run[i + 1])]
            i += 1
            continue
        successor = _continuation(catalog, run, seg, gtids)
        if successor is None:
            return found, []
        run, i = successor, 0


def _gap(before: LogSegment, after: LogSegment) -> str:
    first, last = file_number(before.start_key) + 1, file_number(after.start_key) - 1
    base = before.name.rsplit(".", 1)[0]
    width = len(before.name.rsplit(".", 1)[1])
    names = f"{base}.{first:0{width}d}" + (f" to {base}.{last:0{width}d}" if last > first else "")
    return (
        f"missing binlog {names} (stream {before.stream}, between {before.name} and {after.name})"
    )


def _continuation(
    catalog: Catalog, run: SegmentRun, last: LogSegment, gtids: Gtids
) -> SegmentRun | None:
    """Another stream whose first file starts from exactly the state ``last`` ended with."""
    if last.gtids_after is None:
        return None
    for other in catalog.streams.values():
        if other is run or not len(other):
            continue
        first = other[0]
        if (
            first.system == last.system
            and first.gtids_before is not None
            and gtids.same_state(first.gtids_before, last.gtids_after)
        ):
            return other
    return None


def documents_needed(catalog: Catalog, target: Target) -> list[LogSegment]:
    """Segments whose transactions are needed to place the stop exactly."""
    found: list[LogSegment] = []
    gtids = Gtids(catalog.engine, target)
    for run in catalog.streams.values():
        if target.kind == "gtid":
            befores, afters = run.column("gtids_before"), run.column("gtids_after")
            found += [
                run[i]
                for i in range(len(run))
                if gtids.reached(afters[i]) and not gtids.reached(befores[i])
            ]
        elif target.kind == "time" and target.time is not None:
            i = run.first_after(target.time, inclusive=target.inclusive)
            if i is not None:
                found.append(run[i])
        elif target.kind == "position" and target.position is not None:
            names = run.column("name")
            found += [run[i] for i, n in enumerate(names) if n == target.position[0]]
    return found


def chains_of(catalog: Catalog, gtids: Gtids, missing: frozenset[str]) -> list[BinlogChain]:
    """Every full backup with the binlogs archived contiguously after its position."""
    return [
        (full, chain_from(catalog, full, gtids, missing)[0])
        for full in catalog.backups
        if full.type == "full"
    ]


def window_of(chains: Sequence[BinlogChain]) -> Window:
    earliest = latest = None
    for full, segments in chains:
        if earliest is None or full.end_time < earliest:
            earliest = full.end_time
        times = [s.max_commit for s in segments if s.max_commit is not None]
        end = max([full.end_time, *times])
        latest = end if latest is None else max(latest, end)
    return Window(earliest, latest)


def plan_binlog(
    catalog: Catalog, target: Target, located: Located, missing: frozenset[str]
) -> Plan:
    gtids = Gtids(catalog.engine, target)
    chains = chains_of(catalog, gtids, missing)
    plan = _plan(catalog, target, located, missing, gtids, window_of(chains))
    return replace(plan, windows=of_domains(catalog.engine, chains))


def _plan(
    catalog: Catalog,
    target: Target,
    located: Located,
    missing: frozenset[str],
    gtids: Gtids,
    window: Window,
) -> Plan:
    target_ends = {tx.end for txs in located.values() for tx in txs if gtids.named(tx.gtid)}

    def usable(b: Backup) -> bool:
        if target.kind == "time" and target.time is not None:
            return b.end_time <= target.time
        if target.kind == "gtid":
            return gtids.backup_usable(b.gtid_state, b.end in target_ends)
        if target.kind == "position" and target.position is not None:
            run = _stream_of_backup(catalog, b)
            seg = _named(run, target.position[0], b.end_key) if run else None
            return seg is not None and key_in(seg, target.position[1]) >= b.end_key
        return True

    chain = choose_chain(catalog, usable)
    if chain is None:
        return refuse(
            catalog,
            target,
            [
                f"no backup is at or before the target {target.describe()} "
                f"(recoverable window: {window.describe()})"
            ],
            window,
        )
    segments, broken = chain_from(catalog, chain.last, gtids, missing)
    stop = _stop(target, chain.last, segments, gtids, located)
    problems = chain_problems(chain, missing)
    if isinstance(stop, str):
        problems += [*broken, stop]  # a gap before the target is the reason to name first
    elif stop.at_end and broken:
        problems += broken  # "everything archived" cannot be reached across a gap
    if problems:
        return refuse(catalog, target, problems, window)
    assert not isinstance(stop, str)
    needed = _through_stop(segments, stop)
    return assemble(
        catalog,
        target,
        chain,
        needed,
        window,
        stop,
        start=chain.last.end,
        stop_text=stop.position or "end of the archived binlogs",
        notes=_second_notes(target, needed, located),
    )


def _second_notes(target: Target, segments: Sequence[LogSegment], located: Located) -> list[str]:
    """MariaDB stamps transactions with whole seconds: say so when the target time falls
    inside a second that has transactions (they count as committed at its start)."""
    moment = target.time
    if target.kind != "time" or moment is None or not moment.microsecond:
        return []
    second = moment.replace(microsecond=0)
    same = [
        tx
        for seg in segments
        for tx in located.get(seg.ref, ())
        if tx.time == second and tx.time.microsecond == 0
    ]
    if not same:
        return []
    return [
        f"{len(same)} transaction(s) carry the time {second.isoformat()} (whole seconds in "
        "MariaDB binlogs) and count as committed before the target; use --gtid or "
        "--position to choose between them"
    ]


def _through_stop(segments: Sequence[LogSegment], stop: Stop) -> list[LogSegment]:
    """The chain's segments up to the one the stop lies in (keys only compare within a
    stream: a chain may continue into another stream)."""
    if stop.at_end or stop.key is None:
        return list(segments)
    needed = []
    for seg in segments:
        needed.append(seg)
        if seg.stream == stop.stream and seg.start_key <= stop.key <= seg.end_key:
            break
    return needed


def _named(run: SegmentRun | None, name: str, from_key: int) -> LogSegment | None:
    """The file called ``name`` at or after ``from_key`` (names repeat across streams)."""
    if run is None:
        return None
    start = run.index_containing(from_key)
    for i in range(start or 0, len(run)):
        if run[i].name == name:
            return run[i]
    return None


def _stop(
    target: Target,
    backup: Backup,
    segments: Sequence[LogSegment],
    gtids: Gtids,
    located: Located,
) -> Stop | str:
    if not segments:
        return f"no binlog is archived after backup {backup.id} ({backup.end})"
    stream = segments[-1].stream
    if target.kind == "latest":
        return Stop(stream, None, None, at_end=True)
    if target.kind == "gtid":
        seg = next((s for s in segments if gtids.reached(s.gtids_after)), None)
        if seg is None:
            first = segments[0].gtids_before or backup.gtid_state or "nothing"
            return (
                f"GTID {target.gtid} is not in the archived binlogs (they hold "
                f"{first} to {segments[-1].gtids_after})"
            )
        return _stop_at_gtid(seg, located, gtids, target)
    if target.kind == "position" and target.position is not None:
        name, offset = target.position
        seg = next((s for s in segments if s.name == name), None)
        if seg is None:
            return f"binlog {name} is not in the archived chain after backup {backup.id}"
        if not seg.start_key <= key_in(seg, offset) <= seg.end_key:
            return f"position {name}:{offset} is outside {name} (4 to {offset_of(seg.end_key)})"
        return _stop_at_position(seg, offset, located)
    assert target.time is not None
    moment = target.time
    seg = next(
        (
            s
            for s in segments
            if s.max_commit is not None
            and (s.max_commit > moment or (not target.inclusive and s.max_commit >= moment))
        ),
        None,
    )
    if seg is None:
        last = max((s.max_commit for s in segments if s.max_commit), default=None)
        if last is None or moment > last:
            return (
                f"target {target.describe()} is after the last archived commit "
                f"({last.isoformat() if last else 'none'})"
            )
        return Stop(stream, None, None, at_end=True)

    def after(tx: Transaction) -> bool:
        return tx.time is not None and (
            tx.time > moment or (not target.inclusive and tx.time >= moment)
        )

    return _stop_in(seg, located, after, inclusive=False)


def _stop_at_gtid(seg: LogSegment, located: Located, gtids: Gtids, target: Target) -> Stop | str:
    """Stop at the transaction after which the GTID state first covers the target (several
    MariaDB domains: the last of them in binlog order) — after it, or before it when
    exclusive. That transaction must be one the target names: a GTID whose number was
    reached by another transaction (another server id, a skipped number) is not there."""
    transactions = located.get(seg.ref)
    if transactions is None:
        return f"the index of binlog {seg.name} was not read"
    state = seg.gtids_before
    for n, tx in enumerate(transactions):
        state = gtids.advance(state, tx.gtid)
        if not gtids.reached(state):
            continue
        if not gtids.named(tx.gtid):
            return (
                f"GTID {target.gtid} is not in the archived binlogs ({seg.name} goes from "
                f"{seg.gtids_before or 'nothing'} to {tx.gtid} without it)"
            )
        if target.inclusive:
            return _boundary(seg, tx.end or tx.position, tx)
        return _boundary(seg, tx.position, transactions[n - 1] if n else None)
    return f"GTID {target.gtid} is not in the index of binlog {seg.name}"


def _stop_in(
    seg: LogSegment, located: Located, is_target: Callable[[Transaction], bool], inclusive: bool
) -> Stop | str:
    """Stop at the first transaction of ``seg`` for which ``is_target`` holds: after it when
    ``inclusive``, before it otherwise."""
    transactions = located.get(seg.ref)
    if transactions is None:
        return f"the index of binlog {seg.name} was not read"
    for n, tx in enumerate(transactions):
        if is_target(tx):
            if inclusive:
                return _boundary(seg, tx.end or tx.position, tx)
            previous = transactions[n - 1] if n else None
            return _boundary(seg, tx.position, previous)
    return Stop(seg.stream, seg.end_key, f"{seg.name}:{offset_of(seg.end_key)}", None)


def _stop_at_position(seg: LogSegment, offset: int, located: Located) -> Stop | str:
    transactions = located.get(seg.ref, ())
    boundaries = {offset_of(seg.start_key), offset_of(seg.end_key)}
    last = None
    for tx in transactions:
        boundaries.update(int(p.rsplit(":", 1)[1]) for p in (tx.position, tx.end) if p)
        if tx.end and int(tx.end.rsplit(":", 1)[1]) <= offset:
            last = tx
    if offset not in boundaries:
        return (
            f"position {seg.name}:{offset} is not a transaction boundary "
            f"(see 'pitr events' for the positions of {seg.name})"
        )
    return Stop(seg.stream, key_in(seg, offset), f"{seg.name}:{offset}", last)


def _boundary(seg: LogSegment, position: str, tx: Transaction | None) -> Stop:
    offset = int(position.rsplit(":", 1)[1])
    return Stop(seg.stream, key_in(seg, offset), f"{seg.name}:{offset}", tx)
