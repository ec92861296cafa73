"""The binlog planner on realistic MariaDB catalogs: chains, stops, gaps, streams, GTIDs.

File ``n`` of a stream holds three transactions ``0-1-(3n-2)`` .. ``0-1-3n`` at minute ``n`` +
0/10/20 s, at offsets 300-500, 500-700 and 700-900 of a 1000-byte file; a backup sits at a
transaction boundary of one file with the GTID state there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment, Transaction
from pitr.catalog.segments import SegmentRun
from pitr.cli.documents import listing as describe
from pitr.domain.positions import FILE_SHIFT
from pitr.domain.targets import Target
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan
from pitr.storage.transfer import StoredObject

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STREAM = "1-mysql-bin.000001-0badcafe"
SIZE = 1000
BOUNDS = (300, 500, 700, 900)


def at(n: int, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=n, seconds=seconds)


def key(n: int, offset: int) -> int:
    return n << FILE_SHIFT | offset


def name(n: int) -> str:
    return f"mysql-bin.{n:06d}"


def state(seq: int, extra: str = "") -> str:
    return ",".join(p for p in (f"0-1-{seq}" if seq else "", extra) if p)


def txs(n: int, stream: str = STREAM, first_seq: int | None = None) -> list[Transaction]:
    first = 3 * n - 2 if first_seq is None else first_seq
    return [
        Transaction(
            time=at(n, 10 * k),
            position=f"{name(n)}:{BOUNDS[k]}",
            key=key(n, BOUNDS[k]),
            gtid=f"0-1-{first + k}",
            end=f"{name(n)}:{BOUNDS[k + 1]}",
            summary=f"INSERT shop.t: {k + 1} rows",
        )
        for k in range(3)
    ]


def seg(
    n: int, stream: str = STREAM, system: str = "1", first_seq: int | None = None
) -> LogSegment:
    ts = txs(n, stream, first_seq)
    before = (ts[0].gtid or "0-1-1").rsplit("-", 1)
    return LogSegment(
        name=name(n),
        stream=stream,
        system=system,
        start=f"{name(n)}:4",
        end=f"{name(n)}:{SIZE}",
        start_key=key(n, 4),
        end_key=key(n, SIZE),
        object=StoredObject(f"main/logs/{stream}/{name(n)}.zst", 400, "0" * 64, SIZE, "zstd"),
        commits=3,
        first_commit=ts[0].time,
        last_commit=ts[-1].time,
        min_commit=ts[0].time,
        max_commit=ts[-1].time,
        gtids_before=state(int(before[1]) - 1),
        gtids_after=ts[-1].gtid,
        kind="binlog",
    )


def backup(
    backup_id: str, n: int, k: int, *, kind: str = "full", parent: str | None = None,
    stream: str = STREAM, system: str = "1",
) -> Backup:  # fmt: skip
    """A backup after ``k`` transactions of file ``n``."""
    seq = 3 * n - 3 + k
    return Backup(
        id=backup_id,
        type=kind,  # type: ignore[arg-type]
        parent=parent,
        instance="main",
        engine="mariadb",
        system=system,
        start_time=at(n, 10 * k - 5),
        end_time=at(n, 10 * k - 1),
        start=f"{name(n)}:{BOUNDS[k]}",
        end=f"{name(n)}:{BOUNDS[k]}",
        start_key=key(n, BOUNDS[k]),
        end_key=key(n, BOUNDS[k]),
        stream=stream,
        objects=(
            StoredObject(f"main/backups/{backup_id}/data.xb.zst", 5000, "0" * 64, 9000, "zstd"),
        ),
        gtid_state=state(seq),
    )


def catalog(backups: Iterable[Backup], segments: Iterable[LogSegment]) -> Catalog:
    streams: dict[str, list[LogSegment]] = defaultdict(list)
    for s in segments:
        streams[s.stream].append(s)
    return Catalog(
        instance="main",
        engine="mariadb",
        backups=tuple(backups),
        streams={k: SegmentRun.of(k, v) for k, v in streams.items()},
    )


def plan(cat: Catalog, target: Target, missing: Iterable[str] = ()) -> Plan:
    located: dict[str, list[Transaction]] = {}
    for s in documents_needed(cat, target):
        first = int(str(s.gtids_before or "0-1-0").split(",")[0].rsplit("-", 1)[1]) + 1
        located[s.ref] = txs(int(s.name.rsplit(".", 1)[1]), s.stream, first)
    return build_plan(cat, target, located=located, missing=frozenset(missing))


def gtid(value: str, inclusive: bool = True) -> Target:
    return Target("gtid", inclusive=inclusive, gtid=value)


def doc_of(p: Plan) -> dict[str, Any]:
    doc: dict[str, Any] = p.to_dict()["plan"]
    return doc


def replay(p: Plan) -> dict[str, Any]:
    doc = doc_of(p)
    assert doc["recoverable"], doc.get("problems")
    step: dict[str, Any] = next(s for s in doc["steps"] if s["action"] == "replay_logs")
    return step


def problems(p: Plan) -> list[str]:
    doc = doc_of(p)
    assert not doc["recoverable"]
    return list(doc["problems"])


BASIC = catalog([backup("F1", 1, 1)], [seg(n) for n in range(1, 5)])


def test_gtid_inclusive_and_exclusive_stop_at_transaction_boundaries() -> None:
    step = replay(plan(BASIC, gtid("0-1-8")))  # file 3, second transaction
    assert step["from"] == "mysql-bin.000001:500"
    assert step["to"] == "mysql-bin.000003:700"
    assert step["logs"] == [name(1), name(2), name(3)]
    step = replay(plan(BASIC, gtid("0-1-8", inclusive=False)))
    assert step["to"] == "mysql-bin.000003:500"
    step = replay(plan(BASIC, gtid("0-1-7", inclusive=False)))  # first of its file
    assert step["to"] == "mysql-bin.000003:300" and step["logs"][-1] == name(3)


def test_last_transaction_is_reported() -> None:
    doc = doc_of(plan(BASIC, gtid("0-1-8")))
    assert doc["last_transaction"]["gtid"] == "0-1-8"
    assert doc["last_transaction"]["position"] == "mysql-bin.000003:500"


def test_gtid_not_archived_names_the_range() -> None:
    (problem,) = problems(plan(BASIC, gtid("0-1-99")))
    assert "0-1-99 is not in the archived binlogs" in problem
    assert "0-1-12" in problem


def test_gtid_with_another_server_id_is_not_there() -> None:
    (problem,) = problems(plan(BASIC, gtid("0-7-8")))
    assert "0-7-8 is not in the archived binlogs" in problem


def test_gtid_already_in_every_backup() -> None:
    late = catalog([backup("F1", 3, 2)], [seg(n) for n in range(1, 5)])
    (problem,) = problems(plan(late, gtid("0-1-2")))
    assert problem.startswith("no backup is at or before the target")
    # the backup's own last transaction is a valid inclusive target (nothing to replay)
    step = replay(plan(late, gtid("0-1-8")))
    assert step["from"] == step["to"] == "mysql-bin.000003:700"


def test_several_domains_stop_after_the_last_of_them() -> None:
    mixed = ["0-1-1", "1-2-1", "0-1-2"]
    ts = [
        Transaction(at(1, 10 * k), f"{name(1)}:{BOUNDS[k]}", key(1, BOUNDS[k]), gtid=g,
                    end=f"{name(1)}:{BOUNDS[k + 1]}")
        for k, g in enumerate(mixed)
    ]  # fmt: skip
    one = seg(1)
    one = LogSegment(**{**one.__dict__, "gtids_before": "", "gtids_after": "0-1-2,1-2-1"})
    full = backup("F1", 1, 0)
    full = Backup(**{**full.__dict__, "gtid_state": ""})
    cat = catalog([full], [one])
    target = gtid("0-1-1,1-2-1")
    assert documents_needed(cat, target) == [one]
    located = {one.ref: ts}
    step = replay(build_plan(cat, target, located=located))
    assert step["to"] == "mysql-bin.000001:700"
    step = replay(build_plan(cat, gtid("0-1-1,1-2-1", inclusive=False), located=located))
    assert step["to"] == "mysql-bin.000001:500"


def test_time_target_is_exact_to_the_transaction() -> None:
    step = replay(plan(BASIC, Target("time", time=at(3, 15))))
    assert step["to"] == "mysql-bin.000003:700"  # 0-1-7 at :00 and 0-1-8 at :10
    step = replay(plan(BASIC, Target("time", inclusive=False, time=at(3, 10))))
    assert step["to"] == "mysql-bin.000003:500"
    step = replay(plan(BASIC, Target("time", time=at(3, 10))))
    assert step["to"] == "mysql-bin.000003:700"


def test_time_inside_a_second_gets_a_note() -> None:
    doc = doc_of(plan(BASIC, Target("time", time=at(3, 10.5))))
    assert any("whole seconds" in n for n in doc["notes"])
    doc = doc_of(plan(BASIC, Target("time", time=at(3, 15))))
    assert "notes" not in doc


def test_time_after_the_last_commit_is_refused() -> None:
    (problem,) = problems(plan(BASIC, Target("time", time=at(9))))
    assert "after the last archived commit" in problem


def test_position_target() -> None:
    step = replay(plan(BASIC, Target("position", position=(name(2), 700))))
    assert step["to"] == "mysql-bin.000002:700" and step["logs"] == [name(1), name(2)]
    (problem,) = problems(plan(BASIC, Target("position", position=(name(2), 650))))
    assert "not a transaction boundary" in problem
    (problem,) = problems(plan(BASIC, Target("position", position=(name(2), 5000))))
    assert "outside" in problem


def test_latest_replays_everything() -> None:
    step = replay(plan(BASIC, Target("latest")))
    assert step["logs"] == [name(n) for n in range(1, 5)]
    assert step["to"] == "end of the archived binlogs"


def test_a_purged_binlog_is_a_gap_named_by_the_plan() -> None:
    cat = catalog([backup("F1", 1, 1)], [seg(1), seg(2), seg(4), seg(5)])
    (problem,) = problems(plan(cat, Target("latest")))
    assert "missing binlog mysql-bin.000003" in problem
    (problem, *_) = problems(plan(cat, gtid("0-1-11")))
    assert "missing binlog mysql-bin.000003" in problem
    replay(plan(cat, gtid("0-1-5")))  # before the gap: fine


def test_a_binlog_whose_object_is_gone_is_missing() -> None:
    gone = seg(2).object.key
    cat = catalog([backup("F1", 1, 1)], [seg(n) for n in range(1, 5)])
    (problem,) = problems(plan(cat, Target("latest"), missing=[gone]))
    assert f"missing binlog {name(2)}" in problem and gone in problem


def test_a_broken_gtid_state_stops_the_chain() -> None:
    odd = seg(3, first_seq=20)  # starts from 0-1-19, not where file 2 ended (0-1-6)
    cat = catalog([backup("F1", 1, 1)], [seg(1), seg(2), odd])
    (problem,) = problems(plan(cat, Target("latest")))
    assert "does not start where mysql-bin.000002 ended" in problem


def test_another_system_is_refused() -> None:
    cat = catalog([backup("F1", 1, 1)], [seg(1), seg(2, system="9"), seg(3)])
    (problem,) = problems(plan(cat, Target("latest")))
    assert "belongs to another system" in problem


def test_differential_is_chosen_and_replay_starts_there() -> None:
    cat = catalog(
        [backup("F1", 1, 1), backup("D1", 2, 2, kind="diff", parent="F1")],
        [seg(n) for n in range(1, 5)],
    )
    doc = doc_of(plan(cat, gtid("0-1-10")))
    assert [s["action"] for s in doc["steps"]] == ["restore_full", "apply_diff", "replay_logs"]
    assert doc["steps"][2]["from"] == "mysql-bin.000002:700"
    assert doc["steps"][2]["logs"] == [name(2), name(3), name(4)]
    doc = doc_of(plan(cat, gtid("0-1-4")))
    assert [s["action"] for s in doc["steps"]] == ["restore_full", "replay_logs"]


def test_a_chain_continues_into_a_stream_starting_from_its_state() -> None:
    """After RESET MASTER with the state kept (or a sequence restarted at 1), a new stream
    whose first file starts exactly where the old one ended continues the chain: its keys
    are smaller, yet every file up to the stop is replayed."""
    other = "1-mysql-bin.000001-feedf00d"
    new = [seg(n, stream=other, first_seq=12 + 3 * (n - 1) + 1) for n in (1, 2)]
    cat = catalog([backup("F1", 3, 1)], [seg(3), seg(4), *new])
    step = replay(plan(cat, gtid("0-1-17")))
    assert step["logs"] == [name(3), name(4), name(1), name(2)]
    assert step["to"] == "mysql-bin.000002:700"
    assert replay(plan(cat, Target("latest")))["logs"] == [name(3), name(4), name(1), name(2)]


def test_names_repeat_across_streams() -> None:
    """Two sequences with the same file names: each backup replays its own stream."""
    other = "1-mysql-bin.000001-feedf00d"
    cat = catalog(
        [backup("F1", 1, 1), backup("F2", 1, 2, stream=other)],
        [seg(1), seg(2), seg(1, stream=other), seg(2, stream=other)],
    )
    doc = doc_of(plan(cat, Target("position", position=(name(2), 500))))
    assert doc["steps"][0]["backup"] == "F2"
    assert [s.stream for s in plan(cat, Target("latest")).segments] == [other, other]


def test_a_window_per_gtid_domain() -> None:
    """Domain 1 had one transaction, in file 2: its window ends with that binlog."""
    segments = []
    for s in (seg(n) for n in range(1, 5)):
        after = s.gtids_after if s.start_key < key(2, 0) else f"{s.gtids_after},1-2-1"
        before = s.gtids_before if s.start_key < key(3, 0) else f"{s.gtids_before},1-2-1"
        segments.append(LogSegment(**{**s.__dict__, "gtids_before": before, "gtids_after": after}))
    doc = doc_of(plan(catalog([backup("F1", 1, 1)], segments), Target("latest")))
    assert doc["windows"] == [
        {"domain": 0, "earliest": "2026-03-01T00:01:09+00:00",
         "latest": "2026-03-01T00:04:20+00:00", "gtids": "0-1-12"},
        {"domain": 1, "earliest": "2026-03-01T00:01:09+00:00",
         "latest": "2026-03-01T00:02:20+00:00", "gtids": "1-2-1"},
    ]  # fmt: skip
    assert doc["window"]["latest"] == doc["windows"][0]["latest"]
    listing = describe(catalog([backup("F1", 1, 1)], segments))  # pitr list --json
    assert listing["windows"] == doc["windows"]
    # A domain only in the backup's state, never after: its window ends at the backup.
    full = Backup(**{**backup("F1", 1, 1).__dict__, "gtid_state": "0-1-1,5-5-5"})
    doc = doc_of(plan(catalog([full], [seg(1)]), Target("latest")))
    backup_point = "2026-03-01T00:01:09+00:00"
    assert doc["windows"][1] == {
        "domain": 5, "earliest": backup_point, "latest": backup_point, "gtids": "5-5-5"
    }  # fmt: skip
