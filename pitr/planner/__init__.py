"""``build_plan(catalog, target) -> Plan``: pure planning, no I/O, no clock.

Planning happens in up to three calls, the caller doing the reading in between:

1. ``documents_needed(catalog, target)``: the log segments whose transaction lists are needed
   to place the target exactly (a PostgreSQL xid, a binlog stop position); the caller fetches
   their index documents.
2. ``build_plan(catalog, target, located=...)``: the plan, or why there is none.
3. After the caller has listed the repository for ``plan.required_objects()``,
   ``build_plan(..., missing=...)`` again if anything was not there: the plan then names it.
"""

from __future__ import annotations

from dataclasses import replace

from pitr.catalog import Catalog
from pitr.catalog.model import LogSegment
from pitr.domain.targets import Target
from pitr.planner import binlog, wal, windows
from pitr.planner.common import Located
from pitr.planner.plan import Plan, ScopedWindow, Window

__all__ = ["Located", "build_plan", "documents_needed", "window", "windows_of"]


def documents_needed(catalog: Catalog, target: Target) -> list[LogSegment]:
    if catalog.engine == "postgresql":
        return wal.documents_needed(catalog, target)
    return binlog.documents_needed(catalog, target)


def build_plan(
    catalog: Catalog,
    target: Target,
    *,
    located: Located | None = None,
    missing: frozenset[str] = frozenset(),
) -> Plan:
    if catalog.engine == "postgresql":
        plan = wal.plan_wal(catalog, target, located or {}, missing)
        known = {plan.timeline: plan.window} if plan.timeline is not None else {}
        return replace(plan, windows=windows.of_timelines(catalog, missing, known))
    return binlog.plan_binlog(catalog, target, located or {}, missing)


def window(catalog: Catalog) -> Window:
    """The recoverable window on the newest timeline (PostgreSQL) or over every binlog chain."""
    if catalog.engine == "postgresql":
        known = wal.timelines(catalog)
        path = wal.timeline_path(catalog, known[-1]) if known else None
        if path is None:
            return Window(None, None)
        walker = wal.Walker(catalog, path, wal.segment_size_of(catalog))
        return wal.window_on(catalog, walker, None, frozenset())
    gtids = binlog.Gtids(catalog.engine, Target("latest"))
    return binlog.window_of(binlog.chains_of(catalog, gtids, frozenset()))


def windows_of(catalog: Catalog) -> tuple[ScopedWindow, ...]:
    """The recoverable window of every timeline (PostgreSQL), GTID domain (MariaDB) or GTID
    source (MySQL), as ``plan --json`` gives them."""
    if catalog.engine == "postgresql":
        return windows.of_timelines(catalog, frozenset(), {})
    gtids = binlog.Gtids(catalog.engine, Target("latest"))
    return windows.of_domains(catalog.engine, binlog.chains_of(catalog, gtids, frozenset()))
