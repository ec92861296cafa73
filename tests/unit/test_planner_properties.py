"""Properties of the PostgreSQL planner over generated catalogs (hypothesis).

Catalogs: timeline 1 with gaps, restore points and now and then a segment of another system;
sometimes a timeline 2 that branched off inside one of its segments (history file archived)
and wrote on from there. Targets: latest, time, LSN, xid (located through the index documents
the planner asks for) and restore point.

- every recoverable plan replays a contiguous run of segments from its backup's start through
  the segment holding the stop point, all of the backup's system;
- removing any object the plan needs (the history file it follows too) makes it
  unrecoverable and names that object;
- removing any segment the plan replays makes it unrecoverable and names that segment.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

from catalogs import SEG, backup, history, minute, pg_catalog, transactions, wal
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.catalog import Catalog
from pitr.domain.targets import Target, parse_target
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan

SEGMENTS = 30
POINTS = ("rp_a", "rp_b")
BORN = 40  # timeline 2 is born at this minute, and writes its segment n at minute BORN + n
TLI2_XIDS = 5000  # and its transaction ids start here


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    absent = draw(st.sets(st.integers(0, SEGMENTS - 1), max_size=3))  # gaps
    present = [n for n in range(SEGMENTS) if n not in absent]
    foreign = draw(st.sets(st.sampled_from(present), max_size=1))
    placed = draw(st.dictionaries(st.sampled_from(POINTS), st.sampled_from(present), min_size=1))
    points = {n: point for point, n in placed.items()}  # each name in one segment at most
    segments = [
        wal(
            n,
            system="999" if n in foreign else wal(n).system,
            restore_points=[points[n]] if n in points else [],
        )
        for n in present
    ]
    histories = []
    if draw(st.booleans()):
        at = draw(st.integers(1, SEGMENTS - 2))  # timeline 2 branched off inside segment ``at``
        ends = draw(st.integers(at, SEGMENTS - 1))
        for n in range(at, ends + 1):
            seg = wal(n, 2, first=minute(BORN + n), last=minute(BORN + n) + timedelta(seconds=30))
            xids = {"xid_min": TLI2_XIDS + 100 * n, "xid_max": TLI2_XIDS + 100 * n + 9}
            segments.append(replace(seg, **xids))
        histories.append(history(2, [(1, at * SEG + 0x4000)], minute(BORN)))
    full_starts = draw(st.lists(st.integers(0, SEGMENTS - 2), min_size=1, max_size=4, unique=True))
    backups = [backup(f"F{s:02d}", s) for s in sorted(full_starts)]
    for n, full in enumerate(list(backups)):
        if draw(st.booleans()):
            start = int(full.id[1:]) + draw(st.integers(1, 5))
            if start < SEGMENTS:
                backups.append(backup(f"D{start:02d}-{n}", start, kind="diff", parent=full.id))
    return pg_catalog(backups, segments, histories)


@st.composite
def targets(draw: st.DrawFn) -> Target:
    kind = draw(st.sampled_from(["latest", "time", "lsn", "xid", "restore_point"]))
    if kind == "latest":
        return parse_target("postgresql", latest=True)
    if kind == "restore_point":
        return parse_target("postgresql", restore_point=draw(st.sampled_from(POINTS)))
    exclusive = draw(st.booleans())
    if kind == "time":
        seconds = draw(st.integers(0, (BORN + SEGMENTS) * 60))
        moment = minute(0) + timedelta(seconds=seconds)
        return parse_target("postgresql", at=moment.isoformat(), exclusive=exclusive)
    if kind == "xid":
        base = draw(st.sampled_from([0, TLI2_XIDS]))
        xid = base + 100 * draw(st.integers(0, SEGMENTS - 1)) + draw(st.integers(0, 9))
        return parse_target("postgresql", xid=str(max(xid, 3)), exclusive=exclusive)
    lsn = draw(st.integers(0, SEGMENTS - 1)) * SEG + draw(st.integers(0, SEG - 1))
    return parse_target("postgresql", lsn=f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}")


def plan(catalog: Catalog, target: Target, missing: frozenset[str] = frozenset()) -> Plan:
    """Plan as ``pitr plan`` does: first fetch the index documents the planner asks for."""
    located = {s.ref: transactions(s) for s in documents_needed(catalog, target)}
    return build_plan(catalog, target, located=located, missing=missing)


def check_contiguous(plan: Plan) -> None:
    segments = plan.segments
    assert segments, plan
    start = plan.steps[-2].backup.start_key  # type: ignore[union-attr]
    assert segments[0].start_key <= start < segments[0].end_key
    for before, after in pairwise(segments):
        assert after.start_key == before.end_key
    assert {s.system for s in segments} == {plan.steps[0].backup.system}  # type: ignore[union-attr]
    assert plan.stop is not None
    if not plan.stop.at_end:
        assert plan.stop.key is not None
        assert segments[-1].start_key <= plan.stop.key < segments[-1].end_key


@settings(max_examples=200, deadline=None)
@given(catalogs(), targets())
def test_recoverable_plans_are_contiguous(catalog: Catalog, target: Target) -> None:
    p = plan(catalog, target)
    if p.recoverable:
        check_contiguous(p)
        keys = {o.key for b in catalog.backups for o in b.objects}
        keys |= {s.object.key for run in catalog.streams.values() for s in run}
        keys |= {h.object.key for h in catalog.histories}
        assert {o.key for o in p.required_objects()} <= keys
        assert [w.id for w in p.windows] == sorted(int(t, 16) for t in catalog.streams)
    else:
        assert p.problems and not p.steps


@settings(max_examples=150, deadline=None)
@given(catalogs(), targets(), st.data())
def test_removing_a_needed_object_is_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    p = plan(catalog, target)
    if not p.recoverable:
        return
    gone = data.draw(st.sampled_from(p.required_objects()))
    again = plan(catalog, target, frozenset({gone.key}))
    assert not again.recoverable
    assert any(gone.key in problem for problem in again.problems), again.problems


@settings(max_examples=100, deadline=None)
@given(catalogs(), targets(), st.data())
def test_removing_a_replayed_segment_is_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    p = plan(catalog, target)
    if not p.recoverable:
        return
    gone = data.draw(st.sampled_from(p.segments))
    remaining = [s for run in catalog.streams.values() for s in run if s.ref != gone.ref]
    again = plan(pg_catalog(catalog.backups, remaining, catalog.histories), target)
    run = catalog.streams[gone.stream]
    was_last = gone.name == run[len(run) - 1].name  # then the archive simply ends earlier
    if again.timeline != p.timeline and target.kind == "lsn":
        # An LSN is on every timeline that archived it: without the segment, it lies on
        # another one (or on none, and then on the newest whose own leg reaches it).
        return
    if again.recoverable:
        # Only when the archive now ends before it, or a newer backup starts after it.
        start = again.steps[-2].backup.start_key  # type: ignore[union-attr]
        assert was_last or start >= gone.end_key
        check_contiguous(again)
        return
    reasons = [gone.name]
    if was_last:
        reasons.append("after the last archived commit")
    if gone == p.segments[-1] and target.kind in ("xid", "restore_point"):
        reasons.append("is not in the archived WAL")  # the target was recorded in it
    assert any(r in problem for r in reasons for problem in again.problems), again.problems
