"""Properties of the PostgreSQL planner over generated catalogs (hypothesis).

- every recoverable plan replays a contiguous run of segments from its backup's start through
  the segment holding the stop point;
- removing any object the plan needs makes it unrecoverable and names that object;
- removing any segment the plan replays makes it unrecoverable and names that segment.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from catalogs import backup, minute, pg_catalog, wal
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.catalog import Catalog
from pitr.plan import Plan
from pitr.planner import build_plan
from pitr.targets import Target, parse_target

SEGMENTS = 30


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    present = draw(st.sets(st.integers(0, SEGMENTS - 1), min_size=3))
    full_starts = draw(st.lists(st.integers(0, SEGMENTS - 2), min_size=1, max_size=4, unique=True))
    backups = [backup(f"F{s:02d}", s) for s in sorted(full_starts)]
    for n, full in enumerate(list(backups)):
        if draw(st.booleans()):
            start = int(full.id[1:]) + draw(st.integers(1, 5))
            if start < SEGMENTS:
                backups.append(backup(f"D{start:02d}-{n}", start, kind="diff", parent=full.id))
    return pg_catalog(backups, [wal(n) for n in sorted(present)])


@st.composite
def targets(draw: st.DrawFn) -> Target:
    kind = draw(st.sampled_from(["latest", "time", "lsn"]))
    if kind == "latest":
        return parse_target("postgresql", latest=True)
    exclusive = draw(st.booleans())
    if kind == "time":
        seconds = draw(st.integers(0, SEGMENTS * 60))
        moment = minute(0) + timedelta(seconds=seconds)
        return parse_target("postgresql", at=moment.isoformat(), exclusive=exclusive)
    lsn = draw(st.integers(0, SEGMENTS * 16 * 1024 * 1024))
    return parse_target("postgresql", lsn=f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}")


def check_contiguous(plan: Plan) -> None:
    segments = plan.segments
    assert segments, plan
    start = plan.steps[-2].backup.start_key  # type: ignore[union-attr]
    assert segments[0].start_key <= start < segments[0].end_key
    for before, after in pairwise(segments):
        assert after.start_key == before.end_key
    assert plan.stop is not None
    if not plan.stop.at_end:
        assert plan.stop.key is not None
        assert segments[-1].start_key <= plan.stop.key < segments[-1].end_key


@settings(max_examples=150, deadline=None)
@given(catalogs(), targets())
def test_recoverable_plans_are_contiguous(catalog: Catalog, target: Target) -> None:
    plan = build_plan(catalog, target)
    if plan.recoverable:
        check_contiguous(plan)
        keys = {o.key for b in catalog.backups for o in b.objects}
        keys |= {s.object.key for run in catalog.streams.values() for s in run}
        assert {o.key for o in plan.required_objects()} <= keys
    else:
        assert plan.problems and not plan.steps


@settings(max_examples=100, deadline=None)
@given(catalogs(), targets(), st.data())
def test_removing_a_needed_object_is_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    plan = build_plan(catalog, target)
    if not plan.recoverable:
        return
    needed = plan.required_objects()
    gone = data.draw(st.sampled_from(needed))
    again = build_plan(catalog, target, missing=frozenset({gone.key}))
    assert not again.recoverable
    assert any(gone.key in p for p in again.problems), again.problems


@settings(max_examples=100, deadline=None)
@given(catalogs(), targets(), st.data())
def test_removing_a_replayed_segment_is_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    plan = build_plan(catalog, target)
    if not plan.recoverable:
        return
    gone = data.draw(st.sampled_from(plan.segments))
    remaining = [s for run in catalog.streams.values() for s in run if s.name != gone.name]
    smaller = pg_catalog(catalog.backups, remaining)
    again = build_plan(smaller, target)
    run = catalog.streams[gone.stream]
    was_last = gone.name == run[len(run) - 1].name  # then the archive simply ends earlier
    if again.recoverable:
        # Only when the archive now ends before it, or a newer backup starts after it.
        start = again.steps[-2].backup.start_key  # type: ignore[union-attr]
        assert was_last or start >= gone.end_key
        check_contiguous(again)
    elif was_last:
        assert any(
            gone.name in p or "after the last archived commit" in p for p in again.problems
        ), again.problems
    else:
        assert any(gone.name in p for p in again.problems), again.problems
