"""``pitr plan``: read the catalog, locate the target, prove every object.

The planner itself is pure (``pitr.planner``); this module does the reading around it: the
index documents that place the target exactly, then one listing per directory to confirm
that every object the plan needs is really there, as recorded. ``recover`` and ``restore``
hand the same proof to the engine as a :data:`~pitr.engines.base.Replan`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pitr import crypt
from pitr.catalog import Catalog, openlogs
from pitr.catalog.documents import parallel
from pitr.catalog.store import CatalogStore, open_catalog
from pitr.config.settings import Settings
from pitr.domain.targets import Target
from pitr.engines.base import Replan
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan
from pitr.storage.transfer import StoredObject


def plan(settings: Settings, instance: str | None, target: Target) -> Plan:
    """``pitr plan``: the proven plan for ``target``; nothing is touched."""
    return make_plan(open_catalog(settings, settings.instance(instance)), target)


def make_plan(
    store: CatalogStore, target: Target, catalog: Catalog | None = None, *, reading: bool = False
) -> Plan:
    """The plan for ``target``, every object it needs confirmed in the repository; with
    ``reading`` (restore, recover), every encrypted one also confirmed to open with the
    configured identities."""
    catalog = catalog or store.load()
    # the open binlogs' shipped transactions, the partial WAL segment archive --follow streams
    catalog = openlogs.with_open(store.storage, store.layout, catalog)
    located = store.transactions(documents_needed(catalog, target))
    plan = build_plan(catalog, target, located=located)
    if plan.recoverable:
        wrong = store.confirm(plan.required_objects())
        if wrong:
            plan = build_plan(catalog, target, located=located, missing=frozenset(wrong))
    if plan.recoverable and reading:
        confirm_readable(store, plan.required_objects())
    return plan


def confirm_readable(store: CatalogStore, objects: Sequence[StoredObject]) -> None:
    """Open each encrypted object's header with the identities, before anything is touched:
    ``IdentityMissing`` or ``WrongIdentity`` (exit 2) names the setting or the object."""
    keyring = crypt.installed()
    sealed = [o for o in objects if o.encryption != "none"]
    if sealed:
        keyring.identities(sealed[0].key)

    def one(obj: StoredObject) -> None:
        with store.storage.open(obj.key) as stream:
            keyring.decrypt(stream, obj.key)

    parallel(one, sealed)


def replan_of(store: CatalogStore, target: Target) -> Replan:
    """``make_plan`` for ``target``, each time the engine asks: the repository may have grown.
    The engine reads what the plan names, so the encrypted objects must open (``reading``),
    which the engine's first call proves before the instance is touched."""
    return lambda: make_plan(store, target, reading=True)
