"""PostgreSQL ``archive --follow``'s pure parts: the slot's name, how ``status`` grades the WAL
it holds, and the streamed partial segment planned as its timeline's last segment
(``openlogs.with_open`` on a file repository, then the pure planner)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from catalogs import backup, minute, obj, pg_catalog, wal

from pitr.catalog import openlogs
from pitr.catalog.layout import Layout
from pitr.catalog.model import SegmentIndex
from pitr.commands.status import slot_check
from pitr.config.settings import StatusSettings
from pitr.domain.targets import parse_target
from pitr.engines.base import SlotLag
from pitr.engines.postgresql.follow import slot_name
from pitr.planner import build_plan
from pitr.storage.local import LocalStorage

MB = 1024 * 1024


def test_slot_name_is_pitr_and_the_instance_in_the_characters_a_slot_allows() -> None:
    assert slot_name("main") == "pitr_main"
    assert slot_name("Shop-EU.1") == "pitr_shop_eu_1"
    assert len(slot_name("x" * 100)) == 63


def test_slot_lag_is_graded_against_the_thresholds() -> None:
    limits = StatusSettings(slot_warn_mb=10, slot_crit_mb=20)

    def grade(held: int | None, status: str = "reserved", active: bool = True) -> str:
        return slot_check(SlotLag("pitr_main", active, held, status), limits).state

    assert grade(9 * MB) == "OK"
    assert grade(10 * MB, active=False) == "WARN"
    assert grade(25 * MB) == "CRIT"
    assert grade(0, status="lost") == "CRIT"
    check = slot_check(SlotLag("pitr_main", False, 3_000_000, "reserved"), limits)
    assert check.name == "slot" and check.detail == (
        "replication slot pitr_main (inactive): holds 3.0 MB of WAL"
    )


def test_the_partial_segment_is_the_timelines_last_until_the_complete_one_is_archived(
    tmp_path: Path,
) -> None:
    storage, layout = LocalStorage(str(tmp_path)), Layout("main")
    archived = [wal(n) for n in range(6)]
    streamed = wal(6, last=minute(6) + timedelta(seconds=5))
    key = openlogs.object_key(layout, streamed.stream, streamed.name, 1234, ".zst")
    streamed = replace(streamed, object=obj(key), extra={"partial": True})
    openlogs.publish(storage, layout, SegmentIndex(streamed, ()), None)
    catalog = openlogs.with_open(storage, layout, pg_catalog([backup("F1", 2)], archived))
    at = parse_target("postgresql", at=(minute(6) + timedelta(seconds=3)).isoformat())
    plan = build_plan(catalog, at)
    assert plan.recoverable, plan.problems
    assert plan.steps[-1].to_dict()["logs"][-1] == streamed.name
    assert plan.window.latest == minute(6) + timedelta(seconds=5)
    # once the complete segment is archived, the partial one is not planned
    complete = pg_catalog([backup("F1", 2)], [*archived, wal(6)])
    assert openlogs.with_open(storage, layout, complete).streams["00000001"][6].object.key != key
