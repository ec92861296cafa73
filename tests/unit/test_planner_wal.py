"""The PostgreSQL planner on realistic catalogs: backups, WAL, timelines, and what is missing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from catalogs import (
    SEG,
    SYSTEM,
    backup,
    history,
    minute,
    pg_catalog,
    transactions,
    wal,
)

from pitr.catalog.model import Transaction
from pitr.cli.render import plan_text
from pitr.domain.targets import Target, parse_target
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan


def target(**options: object) -> Target:
    return parse_target("postgresql", **options)  # type: ignore[arg-type]


def names(plan: Plan) -> list[str]:
    return [s.name for s in plan.segments]


def seg_name(n: int, tli: int = 1) -> str:
    return wal(n, tli).name


FULL_ONLY = pg_catalog([backup("F1", 2)], [wal(n) for n in range(10)])


def test_latest_replays_everything_from_the_backup() -> None:
    plan = build_plan(FULL_ONLY, target(latest=True))
    assert plan.recoverable, plan.problems
    assert [s.action for s in plan.steps] == ["restore_full", "replay_logs"]
    assert plan.full is not None and plan.full.id == "F1"
    assert names(plan) == [seg_name(n) for n in range(2, 10)]
    assert plan.stop is not None and plan.stop.at_end
    assert plan.timeline == 1
    doc = plan.to_dict()["plan"]
    assert doc["steps"][1]["logs"][0] == "000000010000000000000002"
    assert doc["window"]["earliest"] == "2026-03-01T00:02:55+00:00"
    assert doc["window"]["latest"] == "2026-03-01T00:09:50+00:00"


def test_time_target_stops_in_the_segment_of_the_first_later_commit() -> None:
    plan = build_plan(FULL_ONLY, target(at=(minute(5) + timedelta(seconds=30)).isoformat()))
    assert plan.recoverable, plan.problems
    assert names(plan)[-1] == seg_name(5)
    assert names(plan)[0] == seg_name(2)


def test_time_target_between_segments() -> None:
    # minute 5 + 55 s: every commit of segment 5 is before; the first later one is in 6.
    plan = build_plan(FULL_ONLY, target(at=(minute(5) + timedelta(seconds=55)).isoformat()))
    assert names(plan)[-1] == seg_name(6)


def test_exclusive_time_at_a_commit_stops_before_it() -> None:
    moment = minute(7) + timedelta(seconds=50)  # the last commit of segment 7
    assert names(build_plan(FULL_ONLY, target(at=moment.isoformat())))[-1] == seg_name(8)
    exclusive = build_plan(FULL_ONLY, target(at=moment.isoformat(), exclusive=True))
    assert names(exclusive)[-1] == seg_name(7)


def test_time_at_the_last_commit_replays_to_the_end() -> None:
    plan = build_plan(FULL_ONLY, target(at=(minute(9) + timedelta(seconds=50)).isoformat()))
    assert plan.recoverable
    assert plan.stop is not None and plan.stop.at_end
    assert names(plan)[-1] == seg_name(9)


def test_time_after_the_last_commit_is_refused_with_the_window() -> None:
    plan = build_plan(FULL_ONLY, target(at=minute(30).isoformat()))
    assert not plan.recoverable
    assert "after the last archived commit" in plan.problems[0]
    assert plan.window.latest == minute(9) + timedelta(seconds=50)


def test_time_before_the_first_backup_is_refused() -> None:
    plan = build_plan(FULL_ONLY, target(at=minute(1).isoformat()))
    assert not plan.recoverable
    assert "no backup on timeline 1 ends before the target" in plan.problems[0]
    assert "2026-03-01T00:02:55+00:00" in plan.problems[0]


def test_newest_full_before_the_target_is_chosen_with_its_newest_usable_diff() -> None:
    catalog = pg_catalog(
        [
            backup("F1", 1),
            backup("D1", 3, kind="diff", parent="F1"),
            backup("F2", 5),
            backup("D2", 6, kind="diff", parent="F2"),
            backup("D3", 8, kind="diff", parent="F2"),
        ],
        [wal(n) for n in range(12)],
    )
    plan = build_plan(catalog, target(at=(minute(7) + timedelta(seconds=10)).isoformat()))
    assert plan.recoverable, plan.problems
    assert [s.action for s in plan.steps] == ["restore_full", "apply_diff", "replay_logs"]
    assert plan.full is not None and plan.full.id == "F2"
    assert plan.differential is not None and plan.differential.id == "D2"
    assert names(plan)[0] == seg_name(6)  # replay starts at the differential's start
    # Before F2 ends: F1 and its differential.
    early = build_plan(catalog, target(at=(minute(4) + timedelta(seconds=10)).isoformat()))
    assert early.full is not None and early.full.id == "F1"
    assert early.differential is not None and early.differential.id == "D1"


def test_lsn_target() -> None:
    lsn = 6 * SEG + 0x1234
    plan = build_plan(FULL_ONLY, target(lsn=f"0/{lsn:X}"))
    assert plan.recoverable, plan.problems
    assert names(plan)[-1] == seg_name(6)
    assert plan.stop is not None and plan.stop.key == lsn


def test_lsn_before_the_backup_is_refused() -> None:
    plan = build_plan(FULL_ONLY, target(lsn=f"0/{SEG:X}"))
    assert not plan.recoverable
    assert "no backup" in plan.problems[0]


def test_xid_target_is_located_through_index_documents() -> None:
    xid_target = target(xid="705", exclusive=True)
    needed = documents_needed(FULL_ONLY, xid_target)
    assert [s.name for s in needed] == [seg_name(7)]
    located = {needed[0].ref: transactions(needed[0])}
    plan = build_plan(FULL_ONLY, xid_target, located=located)
    assert plan.recoverable, plan.problems
    assert names(plan)[-1] == seg_name(7)
    assert plan.stop is not None and plan.stop.transaction is not None
    assert plan.stop.transaction.xid == 705
    assert not plan.target.inclusive


def test_xid_not_archived_is_refused_with_the_window() -> None:
    plan = build_plan(FULL_ONLY, target(xid="99999"), located={})
    assert not plan.recoverable
    assert "transaction 99999 is not in the archived WAL" in plan.problems[0]
    assert "recoverable window" in plan.problems[0]


def test_restore_point_target() -> None:
    segments = [wal(n, restore_points=["before_upgrade"] if n == 4 else ()) for n in range(8)]
    catalog = pg_catalog([backup("F1", 1)], segments)
    plan = build_plan(catalog, target(restore_point="before_upgrade"))
    assert plan.recoverable, plan.problems
    assert names(plan)[-1] == seg_name(4)
    missing = build_plan(catalog, target(restore_point="nope"))
    assert not missing.recoverable and "restore point nope" in missing.problems[0]


def test_missing_segment_is_named() -> None:
    catalog = pg_catalog([backup("F1", 2)], [wal(n) for n in range(10) if n != 6])
    plan = build_plan(catalog, target(at=(minute(8) + timedelta(seconds=10)).isoformat()))
    assert not plan.recoverable
    assert plan.steps == ()
    assert any("missing WAL segment 000000010000000000000006" in p for p in plan.problems)
    # The window ends where the gap begins.
    assert plan.window.latest == minute(5) + timedelta(seconds=50)
    before_gap = build_plan(catalog, target(at=(minute(4) + timedelta(seconds=10)).isoformat()))
    assert before_gap.recoverable


def test_missing_data_object_is_named() -> None:
    gone = wal(4).object.key
    plan = build_plan(FULL_ONLY, target(latest=True), missing=frozenset({gone}))
    assert not plan.recoverable
    assert any(gone in p and seg_name(4) in p for p in plan.problems)
    backup_object = FULL_ONLY.backups[0].objects[0].key
    plan = build_plan(FULL_ONLY, target(latest=True), missing=frozenset({backup_object}))
    assert not plan.recoverable
    assert any(backup_object in p for p in plan.problems)


def test_segments_of_another_system_are_refused() -> None:
    segments = [wal(n, system="999" if n == 5 else SYSTEM) for n in range(8)]
    plan = build_plan(pg_catalog([backup("F1", 1)], segments), target(latest=True))
    assert not plan.recoverable
    assert any("belongs to another system (999" in p for p in plan.problems)


def test_backup_of_another_system_is_not_used() -> None:
    catalog = pg_catalog(
        [backup("F1", 1), backup("X", 3, system="999")], [wal(n) for n in range(8)]
    )
    plan = build_plan(catalog, target(latest=True))
    assert not plan.recoverable  # X is newest, but its WAL is another system's
    assert any("another system" in p for p in plan.problems)


# --- timelines -----------------------------------------------------------------------------

SWITCH = 5 * SEG + 0x4000  # timeline 2 branched off inside segment 5 ...
BORN = minute(20)  # ... when the DBA recovered, at minute 20


def two_timelines() -> object:
    """Timeline 1 ran to segment 9 (the mistake in it); a recovery to just inside segment 5
    started timeline 2 at minute 20, which wrote segments 5 to 8."""
    tli2 = [
        wal(n, tli=2, first=minute(20 + n), last=minute(20 + n) + timedelta(seconds=30))
        for n in range(5, 9)
    ]
    return pg_catalog(
        [backup("F1", 1)],
        [*(wal(n) for n in range(10)), *tli2],
        [history(2, [(1, SWITCH)], BORN)],
    )


def test_latest_follows_the_newest_timeline_through_the_switch() -> None:
    plan = build_plan(two_timelines(), target(latest=True))  # type: ignore[arg-type]
    assert plan.recoverable, plan.problems
    assert plan.timeline == 2
    expected = [seg_name(n) for n in range(1, 5)] + [seg_name(n, 2) for n in range(5, 9)]
    assert names(plan) == expected  # the switch segment comes from timeline 2


def test_time_on_the_old_timeline_after_the_switch_follows_timeline_1() -> None:
    moment = minute(7) + timedelta(seconds=10)  # before timeline 2 was born
    plan = build_plan(two_timelines(), target(at=moment.isoformat()))  # type: ignore[arg-type]
    assert plan.recoverable, plan.problems
    assert plan.timeline == 1
    assert names(plan) == [seg_name(n) for n in range(1, 8)]


def test_time_after_the_branch_follows_timeline_2() -> None:
    moment = minute(26) + timedelta(seconds=10)
    plan = build_plan(two_timelines(), target(at=moment.isoformat()))  # type: ignore[arg-type]
    assert plan.recoverable, plan.problems
    assert plan.timeline == 2
    assert names(plan)[-1] == seg_name(6, 2)


def test_explicit_timeline() -> None:
    moment = minute(7) + timedelta(seconds=10)
    plan = build_plan(two_timelines(), target(at=moment.isoformat(), timeline="2"))  # type: ignore[arg-type]
    assert plan.timeline == 2
    assert names(plan)[4] == seg_name(5, 2)


def test_missing_history_is_named() -> None:
    catalog = pg_catalog([backup("F1", 1)], [wal(n) for n in range(4)] + [wal(5, tli=3)])
    plan = build_plan(catalog, target(latest=True))
    assert not plan.recoverable
    assert "missing timeline history file 00000003.history" in plan.problems[0]


def test_xid_on_the_old_timeline_only() -> None:
    catalog = two_timelines()
    seg7 = next(s for s in catalog.streams["00000001"] if s.name == seg_name(7))  # type: ignore[attr-defined]
    located = {seg7.ref: transactions(seg7)}
    plan = build_plan(catalog, target(xid="703"), located=located)  # type: ignore[arg-type]
    assert plan.recoverable, plan.problems
    assert plan.timeline == 1


def test_plan_json_shape() -> None:
    doc = build_plan(FULL_ONLY, target(latest=True)).to_dict()
    plan = doc["plan"]
    assert set(plan) >= {"instance", "datastore", "target", "recoverable", "steps", "window"}
    assert plan["target"] == {"type": "latest", "value": None, "inclusive": True}
    assert {"action", "backup", "bytes"} <= set(plan["steps"][0])
    assert {"action", "from", "to", "logs", "bytes"} <= set(plan["steps"][1])
    refused = build_plan(FULL_ONLY, target(at=minute(1).isoformat())).to_dict()["plan"]
    assert refused["recoverable"] is False and refused["problems"]


@pytest.mark.parametrize("n", [0, 1])
def test_empty_catalogs(n: int) -> None:
    catalog = pg_catalog([backup("F1", 1)] if n else [], [])
    plan = build_plan(catalog, target(latest=True))
    assert not plan.recoverable
    assert plan.problems


def test_transaction_rows_round_trip() -> None:
    tx = transactions(wal(3))[0]
    assert Transaction.from_list(tx.to_list()) == tx


def test_a_long_stretch_without_commits_keeps_the_window() -> None:
    """Commits in segments 0-10, then 289 segments without any (a long COPY, an index
    build): the last archived commit is still found, however far back."""
    catalog = pg_catalog([backup("F1", 2)], [wal(n, commits=n <= 10) for n in range(300)])
    plan = build_plan(catalog, target(at=minute(5).isoformat()))
    assert plan.recoverable, plan.problems
    assert names(plan)[-1] == seg_name(5)
    assert plan.window.latest == minute(10) + timedelta(seconds=50)
    lsn = build_plan(catalog, target(lsn=f"0/{7 * SEG + 0x100:X}"))
    assert lsn.recoverable, lsn.problems
    after = build_plan(catalog, target(lsn=f"0/{20 * SEG:X}"))
    assert not after.recoverable
    assert f"after the last archived commit (0/{11 * SEG - 1000:X})" in after.problems[0]


def test_the_history_file_followed_is_required_and_named_when_gone() -> None:
    catalog = two_timelines()
    plan = build_plan(catalog, target(latest=True))  # type: ignore[arg-type]
    assert plan.recoverable and plan.timeline == 2
    key = "main/history/00000002.history"
    assert key in {o.key for o in plan.required_objects()}
    gone = build_plan(catalog, target(latest=True), missing=frozenset({key}))  # type: ignore[arg-type]
    assert not gone.recoverable and not gone.steps
    (problem,) = gone.problems
    assert "missing timeline history file 00000002.history" in problem and key in problem
    # Timeline 1 needs no history file: a plan on it is untouched by its loss.
    old = target(at=(minute(7) + timedelta(seconds=10)).isoformat())
    kept = build_plan(catalog, old, missing=frozenset({key}))  # type: ignore[arg-type]
    assert kept.recoverable and kept.timeline == 1 and kept.histories == ()


def test_a_window_per_timeline() -> None:
    plan = build_plan(two_timelines(), target(latest=True))  # type: ignore[arg-type]
    doc = plan.to_dict()["plan"]
    assert doc["windows"] == [
        {"timeline": 1, "earliest": "2026-03-01T00:01:55+00:00",
         "latest": "2026-03-01T00:09:50+00:00"},
        {"timeline": 2, "earliest": "2026-03-01T00:01:55+00:00",
         "latest": "2026-03-01T00:28:30+00:00"},
    ]  # fmt: skip
    assert doc["window"] == {k: doc["windows"][1][k] for k in ("earliest", "latest")}
    # Without its history file, timeline 2 has no window; timeline 1 keeps its own.
    gone = frozenset({"main/history/00000002.history"})
    old = build_plan(two_timelines(), target(at=minute(7).isoformat()), missing=gone)  # type: ignore[arg-type]
    assert [w.to_dict() for w in old.windows][1] == {
        "timeline": 2, "earliest": None, "latest": None
    }  # fmt: skip
    assert old.windows[0].window == old.window


def test_plan_text_lists_the_window_of_each_timeline() -> None:
    text = plan_text(build_plan(two_timelines(), target(latest=True)))  # type: ignore[arg-type]
    assert "  timeline 1: 2026-03-01T00:01:55+00:00 to 2026-03-01T00:09:50+00:00" in text
    assert "  timeline 2: 2026-03-01T00:01:55+00:00 to 2026-03-01T00:28:30+00:00" in text
    assert "timeline 1:" not in plan_text(build_plan(FULL_ONLY, target(latest=True)))


def test_list_gives_the_windows_a_plan_gives() -> None:
    """``pitr list --json`` has the same per-timeline windows as ``plan --json``."""
    from pitr.cli.documents import listing as describe
    from pitr.cli.render import window_lines

    catalog = two_timelines()
    listing = describe(catalog)  # type: ignore[arg-type]
    plan = build_plan(catalog, target(latest=True))  # type: ignore[arg-type]
    assert listing["windows"] == [w.to_dict() for w in plan.windows]
    assert [w["timeline"] for w in listing["windows"]] == [1, 2]
    assert window_lines(listing)[1:] == [
        f"  timeline {w['timeline']}: {w['earliest']} to {w['latest']}" for w in listing["windows"]
    ]
