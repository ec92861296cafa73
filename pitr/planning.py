"""Planning with the repository: read the catalog, locate the target, prove every object.

The planner itself is pure (``pitr.planner``); this module does the reading around it: the
index documents that place the target exactly, then one listing per directory to confirm
that every object the plan needs is really there, as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from pitr.catalog import Catalog, openlogs
from pitr.catalog.store import CatalogStore
from pitr.config import InstanceSettings, Settings
from pitr.plan import Plan
from pitr.planner import build_plan, documents_needed
from pitr.storage import open_storage
from pitr.targets import Target


@dataclass(frozen=True)
class Planned:
    plan: Plan
    catalog: Catalog


def open_catalog(settings: Settings, instance: InstanceSettings) -> CatalogStore:
    return CatalogStore(open_storage(settings.repository), instance.name, instance.engine)


def make_plan(store: CatalogStore, target: Target, catalog: Catalog | None = None) -> Planned:
    catalog = catalog or store.load()
    if store.engine in ("mariadb", "mysql"):  # the open binlogs' shipped transactions
        catalog = openlogs.with_open(store.storage, store.layout, catalog)
    located = store.transactions(documents_needed(catalog, target))
    plan = build_plan(catalog, target, located=located)
    if plan.recoverable:
        wrong = store.confirm(plan.required_objects())
        if wrong:
            plan = build_plan(catalog, target, located=located, missing=frozenset(wrong))
    return Planned(plan, catalog)
