"""Properties of backup chains with block-level incrementals (hypothesis).

Catalogs are taken as ``pitr backup`` takes them, one backup per couple of segments: a full,
a differential (parent: the newest full) or an incremental (parent: the newest backup of any
type), over contiguous WAL on timeline 1.

- a recoverable plan restores one full, then links each the child of the one before (at most
  one differential, right after the full), ending with the newest backup usable for the target;
- removing any link's manifest (not the full's) refuses the plan and names the missing parent;
- removing any object of a link refuses the plan and names the object;
- retention keeps every link a kept backup needs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from catalogs import backup, pg_catalog, wal
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.catalog import Catalog
from pitr.catalog.model import Backup
from pitr.config.settings import RetentionSettings
from pitr.domain.targets import Target, parse_target
from pitr.planner import build_plan
from pitr.planner.common import lineage
from pitr.planner.retention import plan_expiry

SEGMENTS = 40


@st.composite
def chains(draw: st.DrawFn) -> Catalog:
    kinds = draw(
        st.lists(st.sampled_from(["full", "diff", "incr", "incr"]), min_size=1, max_size=12)
    )
    backups: list[Backup] = []
    for n, kind in enumerate(["full", *kinds]):
        newest_full = next((b for b in reversed(backups) if b.type == "full"), None)
        parent = None
        if kind == "diff":
            parent = newest_full
        elif kind == "incr":
            parent = backups[-1]
        code = {"full": "F", "diff": "D", "incr": "I"}[kind]
        backups.append(backup(f"{n * 3:02d}-{code}", n * 3, kind=kind, parent=parent and parent.id))
    segments = [wal(n) for n in range(SEGMENTS)]
    return pg_catalog(backups, segments, [])


def targets() -> st.SearchStrategy[Target]:
    latest = st.just(parse_target("postgresql", latest=True))
    times = st.integers(0, SEGMENTS * 60 - 1).map(
        lambda s: parse_target(
            "postgresql", at=(datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=s)).isoformat()
        )
    )
    return st.one_of(latest, times)


def links_of(plan_steps: tuple) -> list[Backup]:  # type: ignore[type-arg]
    return [s.backup for s in plan_steps if s.action != "replay_logs"]


@settings(max_examples=100, deadline=None)
@given(chains(), targets())
def test_a_plan_restores_one_whole_chain(catalog: Catalog, target: Target) -> None:
    p = build_plan(catalog, target)
    if not p.recoverable:
        assert p.problems and not p.steps
        return
    links = links_of(p.steps)
    assert links[0].type == "full" and p.steps[0].action == "restore_full"
    for parent, child in pairwise(links):
        assert child.parent == parent.id
        assert child.type != "full"
    assert [b.type for b in links[1:]].count("diff") <= 1
    assert all(b.type == "incr" for b in links[2:])
    assert [s.action for s in p.steps[1 : len(links)]] == [
        "apply_diff" if b.type == "diff" else "apply_incr" for b in links[1:]
    ]
    usable = [b for b in catalog.backups if target.time is None or b.end_time <= target.time]
    assert links[-1] == max(usable, key=lambda b: (b.end_time, b.id))
    assert p.last_backup == links[-1]
    assert p.segments[0].start_key <= links[-1].start_key < p.segments[0].end_key


@settings(max_examples=100, deadline=None)
@given(chains(), targets(), st.data())
def test_a_missing_link_is_refused_and_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    p = build_plan(catalog, target)
    links = links_of(p.steps)
    if not p.recoverable or len(links) < 2:
        return
    gone = data.draw(st.sampled_from(links[1:-1] or links[1:]))
    if gone == links[-1]:
        return  # the newest link itself: the plan then ends at its parent, rightly
    left = [b for b in catalog.backups if b.id != gone.id]
    again = build_plan(
        pg_catalog(left, [s for r in catalog.streams.values() for s in r], []), target
    )
    assert not again.recoverable
    assert any(f"parent {gone.id} is missing" in problem for problem in again.problems)


@settings(max_examples=100, deadline=None)
@given(chains(), targets(), st.data())
def test_a_missing_object_of_a_link_is_named(
    catalog: Catalog, target: Target, data: st.DataObject
) -> None:
    p = build_plan(catalog, target)
    if not p.recoverable:
        return
    gone = data.draw(st.sampled_from([o for b in links_of(p.steps) for o in b.objects]))
    again = build_plan(catalog, target, missing=frozenset({gone.key}))
    assert not again.recoverable
    assert any(gone.key in problem for problem in again.problems)


@settings(max_examples=100, deadline=None)
@given(chains(), st.integers(1, 3))
def test_retention_keeps_every_link_a_kept_backup_needs(catalog: Catalog, full: int) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    expiry = plan_expiry(catalog, RetentionSettings(full=full), now)
    kept = {b.id for b in expiry.keep}
    for b in expiry.keep:
        path, broken = lineage(catalog, b)
        assert broken is None
        assert {link.id for link in path} <= kept
    assert kept | {b.id for b in expiry.backups} == {b.id for b in catalog.backups}
