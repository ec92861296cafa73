"""What ``restore`` and ``recover`` make sure of before they write or stop anything: the
space the restored files need, and that every WAL segment replay needs reads back intact."""

from __future__ import annotations

from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.prefetch import PREFETCH_AHEAD
from pitr.errors import VerificationFailed
from pitr.planner.plan import Plan
from pitr.storage.transfer import verify_all


def space_needed(plan: Plan, *, replay: bool) -> int:
    """Bytes a restore of ``plan`` writes: the base's files (full, differential and
    incrementals, as restored: an overestimate when links rewrite the same blocks) and, when
    it replays, the WAL held at once (prefetched and being replayed)."""
    base = sum(b.raw_bytes for b in (plan.full, plan.differential, *plan.increments) if b)
    if not replay:
        return base
    sizes = sorted((s.object.raw_size for s in plan.segments), reverse=True)
    return base + sum(sizes[: PREFETCH_AHEAD + 2])


def verify_wal(store: CatalogStore, plan: Plan) -> None:
    """Every WAL segment replay will need reads back intact, before the instance is stopped:
    a damaged one (exit 8, named) refuses the recovery while nothing has been touched."""
    failures = verify_all(store.storage, [s.object for s in plan.segments], workers=4)
    if failures:
        raise VerificationFailed(
            failures[0].problem,
            hint="'pitr verify' lists every damaged object",
        )
