"""The binlog planner with either flavour of GTID: generated catalogs (hypothesis) for MariaDB
and MySQL, and MySQL GTID sets (``uuid:1-5``) planned exactly.

File ``n`` holds transactions ``3n-2`` to ``3n`` (at minute ``n`` + 0/10/20 s, offsets
300-500, 500-700, 700-900 of a 1000-byte file); MariaDB numbers them ``0-1-s``, MySQL
``UUID:s`` with the state ``UUID:1-s``. Properties:

- every recoverable plan replays consecutive files, each starting from the GTID state the
  one before ended with, from the file holding the backup's position through the stop;
- removing any object the plan needs makes it unrecoverable and names that object.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, Transaction
from pitr.catalog.segments import SegmentRun
from pitr.domain.positions import FILE_SHIFT, file_number
from pitr.domain.targets import Target, parse_target
from pitr.planner import build_plan, documents_needed
from pitr.planner.binlog import Gtids
from pitr.planner.plan import Plan
from pitr.storage.transfer import StoredObject

T0 = datetime(2026, 3, 1, tzinfo=UTC)
UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
STREAM = "1-mysql-bin.000001-0badcafe"
BOUNDS = (300, 500, 700, 900)
FILES = 8


def at(n: int, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=n, seconds=seconds)


def name(n: int) -> str:
    return f"mysql-bin.{n:06d}"


def gtid(flavour: str, seq: int) -> str:
    return f"0-1-{seq}" if flavour == "mariadb" else f"{UUID}:{seq}"


def state(flavour: str, seq: int) -> str:
    if not seq:
        return ""
    return gtid(flavour, seq) if flavour == "mariadb" else f"{UUID}:1-{seq}"


def txs(flavour: str, n: int) -> list[Transaction]:
    return [
        Transaction(
            time=at(n, 10 * k),
            position=f"{name(n)}:{BOUNDS[k]}",
            key=n << FILE_SHIFT | BOUNDS[k],
            gtid=gtid(flavour, 3 * n - 2 + k),
            end=f"{name(n)}:{BOUNDS[k + 1]}",
        )
        for k in range(3)
    ]


def binlog(flavour: str, n: int, system: str = "1") -> LogSegment:
    return LogSegment(
        name=name(n),
        stream=STREAM,
        system=system,
        start=f"{name(n)}:4",
        end=f"{name(n)}:1000",
        start_key=n << FILE_SHIFT | 4,
        end_key=n << FILE_SHIFT | 1000,
        object=StoredObject(f"main/logs/{STREAM}/{name(n)}.zst", 400, "0" * 64, 1000, "zstd"),
        commits=3,
        first_commit=at(n),
        last_commit=at(n, 20),
        min_commit=at(n),
        max_commit=at(n, 20),
        gtids_before=state(flavour, 3 * n - 3),
        gtids_after=state(flavour, 3 * n),
        kind="binlog",
    )


def backup(
    flavour: str, backup_id: str, n: int, k: int, kind: str = "full", parent: str | None = None
) -> Backup:
    """A backup after ``k`` transactions of file ``n``."""
    return Backup(
        id=backup_id,
        type=kind,  # type: ignore[arg-type]
        parent=parent,
        instance="main",
        engine=flavour,
        system="1",
        start_time=at(n, 10 * k - 5),
        end_time=at(n, 10 * k - 1),
        start=f"{name(n)}:{BOUNDS[k]}",
        end=f"{name(n)}:{BOUNDS[k]}",
        start_key=n << FILE_SHIFT | BOUNDS[k],
        end_key=n << FILE_SHIFT | BOUNDS[k],
        stream=STREAM,
        objects=(
            StoredObject(f"main/backups/{backup_id}/data.xb.zst", 5000, "0" * 64, 9000, "zstd"),
        ),
        gtid_state=state(flavour, 3 * n - 3 + k),
    )


def catalog(flavour: str, backups: list[Backup], segments: list[LogSegment]) -> Catalog:
    return Catalog(
        instance="main",
        engine=flavour,
        backups=tuple(backups),
        streams={STREAM: SegmentRun.of(STREAM, segments)} if segments else {},
    )


def plan(cat: Catalog, target: Target, missing: frozenset[str] = frozenset()) -> Plan:
    located = {
        s.ref: txs(cat.engine, file_number(s.start_key)) for s in documents_needed(cat, target)
    }
    return build_plan(cat, target, located=located, missing=missing)


# -- properties -------------------------------------------------------------------------------


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    flavour = draw(st.sampled_from(["mariadb", "mysql"]))
    absent = draw(st.sets(st.integers(1, FILES), max_size=2))  # purged: a gap in the chain
    present = [n for n in range(1, FILES + 1) if n not in absent]
    foreign = draw(st.sets(st.sampled_from(present), max_size=1)) if present else set()
    segments = [binlog(flavour, n, "9" if n in foreign else "1") for n in present]
    backups = []
    for n, (file, k) in enumerate(
        draw(st.lists(st.tuples(st.integers(1, FILES), st.integers(0, 3)), min_size=1, max_size=3))
    ):
        full = backup(flavour, f"F{n}", file, k)
        backups.append(full)
        if draw(st.booleans()) and file < FILES:
            backups.append(backup(flavour, f"D{n}", file + 1, k, kind="diff", parent=full.id))
    return catalog(flavour, backups, segments)


@st.composite
def targets(draw: st.DrawFn, flavour: str) -> Target:
    kind = draw(st.sampled_from(["latest", "time", "gtid", "position"]))
    if kind == "latest":
        return parse_target(flavour, latest=True)
    n = draw(st.integers(1, FILES))
    if kind == "position":
        return parse_target(flavour, position=f"{name(n)}:{draw(st.sampled_from(BOUNDS))}")
    exclusive = draw(st.booleans())
    if kind == "time":
        moment = at(n, draw(st.integers(-30, 30)))
        return parse_target(flavour, at=moment.isoformat(), exclusive=exclusive)
    seq = 3 * n - 2 + draw(st.integers(0, 2))
    return parse_target(flavour, gtid=gtid(flavour, seq), exclusive=exclusive)


def check_contiguous(p: Plan) -> None:
    segments = p.segments
    last = p.differential or p.full
    assert segments and last is not None and p.stop is not None
    assert file_number(segments[0].start_key) == file_number(last.end_key)
    for before, after in pairwise(segments):
        assert file_number(after.start_key) == file_number(before.start_key) + 1
        assert after.gtids_before == before.gtids_after
    assert all(s.system == last.system for s in segments)
    if not p.stop.at_end:
        assert p.stop.key is not None
        assert segments[-1].start_key <= p.stop.key <= segments[-1].end_key


@settings(max_examples=150, deadline=None)
@given(catalogs(), st.data())
def test_recoverable_plans_are_contiguous(cat: Catalog, data: st.DataObject) -> None:
    p = plan(cat, data.draw(targets(cat.engine)))
    if p.recoverable:
        check_contiguous(p)
    else:
        assert p.problems and not p.steps


@settings(max_examples=100, deadline=None)
@given(catalogs(), st.data())
def test_removing_a_needed_object_is_named(cat: Catalog, data: st.DataObject) -> None:
    target = data.draw(targets(cat.engine))
    p = plan(cat, target)
    if not p.recoverable:
        return
    gone = data.draw(st.sampled_from(p.required_objects()))
    again = plan(cat, target, frozenset({gone.key}))
    assert not again.recoverable
    assert any(gone.key in problem for problem in again.problems), again.problems


# -- MySQL GTID sets ----------------------------------------------------------------------------

MYSQL = catalog("mysql", [backup("mysql", "F1", 1, 1)], [binlog("mysql", n) for n in range(1, 5)])


def mysql(value: str, *, exclusive: bool = False) -> Target:
    return parse_target("mysql", gtid=value, exclusive=exclusive)


def test_mysql_gtid_inclusive_and_exclusive() -> None:
    p = plan(MYSQL, mysql(f"{UUID}:8"))  # file 3, second transaction
    assert p.recoverable, p.problems
    assert p.stop is not None and p.stop.position == f"{name(3)}:700"
    assert p.stop.transaction is not None and p.stop.transaction.gtid == f"{UUID}:8"
    assert [s.name for s in p.segments] == [name(1), name(2), name(3)]
    before = plan(MYSQL, mysql(f"{UUID}:8", exclusive=True))
    assert before.stop is not None and before.stop.position == f"{name(3)}:500"
    assert before.stop.transaction is not None and before.stop.transaction.gtid == f"{UUID}:7"


def test_mysql_gtid_already_in_the_backup() -> None:
    # The backup holds UUID:1-1: UUID:1 is its last transaction (an inclusive target with
    # nothing to replay), and nothing before it can be reached.
    kept = plan(MYSQL, mysql(f"{UUID}:1"))
    assert kept.recoverable, kept.problems
    assert kept.stop is not None and kept.stop.position == f"{name(1)}:500"
    (problem,) = plan(MYSQL, mysql(f"{UUID}:1", exclusive=True)).problems
    assert problem.startswith("no backup is at or before the target")


def test_mysql_gtid_of_another_source_or_beyond_is_not_archived() -> None:
    other = "11111111-2222-3333-4444-555555555555"
    (problem,) = plan(MYSQL, mysql(f"{other}:5")).problems
    assert f"GTID {other}:5 is not in the archived binlogs" in problem
    (problem,) = plan(MYSQL, mysql(f"{UUID}:99")).problems
    assert f"{UUID}:99 is not in the archived binlogs" in problem and f"{UUID}:1-12" in problem


@pytest.mark.parametrize("seq", [4, 12])
def test_mysql_gtid_set_states_chain_across_files(seq: int) -> None:
    p = plan(MYSQL, mysql(f"{UUID}:{seq}"))
    assert p.recoverable, p.problems
    check_contiguous(p)
    doc = p.to_dict()["plan"]
    assert doc["last_transaction"]["gtid"] == f"{UUID}:{seq}"
    assert doc["windows"] == [
        {"source": UUID, "earliest": "2026-03-01T00:01:09+00:00",
         "latest": "2026-03-01T00:04:20+00:00", "gtids": f"{UUID}:1-12"},
    ]  # fmt: skip


def test_mysql_broken_gtid_set_stops_the_chain() -> None:
    odd = LogSegment(**{**binlog("mysql", 3).__dict__, "gtids_before": f"{UUID}:1-5:7"})
    cat = catalog(
        "mysql", [backup("mysql", "F1", 1, 1)], [binlog("mysql", 1), binlog("mysql", 2), odd]
    )
    (problem,) = plan(cat, Target("latest")).problems
    assert f"does not start where {name(2)} ended" in problem


def test_a_mysql_backup_holding_the_target_serves_only_when_it_ends_there() -> None:
    """A GTID set holding the target says nothing of what followed it (other tags, other
    sources): a backup taken after untagged work that followed a tagged target is no base."""
    state = f"{UUID}:1-14:batch_7:1"
    tagged = Gtids("mysql", mysql(f"{UUID}:batch_7:1"))
    assert not tagged.backup_usable(state)
    assert tagged.backup_usable(state, ends_at_target=True)
    assert not Gtids("mysql", mysql(f"{UUID}:batch_7:1", exclusive=True)).backup_usable(state, True)
    assert tagged.backup_usable(f"{UUID}:1-14")
