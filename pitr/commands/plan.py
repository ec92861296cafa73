"""``pitr plan``: read the catalog, locate the target, prove every object.

The planner itself is pure (``pitr.planner``); this module does the reading around it: the
index documents that place the target exactly, then one listing per directory to confirm
that every object the plan needs is really there, as recorded. ``recover`` and ``restore``
hand the same proof to the engine as a :data:`~pitr.engines.base.Replan`.
"""

from __future__ import annotations

from pitr.catalog import Catalog, openlogs
from pitr.catalog.store import CatalogStore, open_catalog
from pitr.config.settings import Settings
from pitr.domain.targets import Target
from pitr.engines.base import Replan
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan


def plan(settings: Settings, instance: str | None, target: Target) -> Plan:
    """``pitr plan``: the proven plan for ``target``; nothing is touched."""
    return make_plan(open_catalog(settings, settings.instance(instance)), target)


def make_plan(store: CatalogStore, target: Target, catalog: Catalog | None = None) -> Plan:
    """The plan for ``target``, every object it needs confirmed in the repository."""
    catalog = catalog or store.load()
    if store.engine in ("mariadb", "mysql"):  # the open binlogs' shipped transactions
        catalog = openlogs.with_open(store.storage, store.layout, catalog)
    located = store.transactions(documents_needed(catalog, target))
    plan = build_plan(catalog, target, located=located)
    if plan.recoverable:
        wrong = store.confirm(plan.required_objects())
        if wrong:
            plan = build_plan(catalog, target, located=located, missing=frozenset(wrong))
    return plan


def replan_of(store: CatalogStore, target: Target) -> Replan:
    """``make_plan`` for ``target``, each time the engine asks: the repository may have grown."""
    return lambda: make_plan(store, target)
