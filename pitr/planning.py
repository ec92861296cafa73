"""Planning with the repository: read the catalog, locate the target, prove every object.

The planner itself is pure (``pitr.planner``); this module does the reading around it: the
index documents that place the target exactly, then one listing per directory to confirm
that every object the plan needs is really there, as recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pitr import crypt
from pitr.catalog import Catalog
from pitr.catalog.documents import parallel
from pitr.catalog.store import CatalogStore
from pitr.config import InstanceSettings, Settings
from pitr.crypt.keyring import keyring_for
from pitr.plan import Plan
from pitr.planner import build_plan, documents_needed
from pitr.storage import open_storage
from pitr.targets import Target
from pitr.transfer import StoredObject


@dataclass(frozen=True)
class Planned:
    plan: Plan
    catalog: Catalog


def open_catalog(settings: Settings, instance: InstanceSettings) -> CatalogStore:
    """The instance's catalog; the repository's keys become this process's (encryption)."""
    crypt.install(keyring_for(settings.repository, settings.source))
    return CatalogStore(open_storage(settings.repository), instance.name, instance.engine)


def make_plan(
    store: CatalogStore, target: Target, catalog: Catalog | None = None, *, reading: bool = False
) -> Planned:
    """The plan for ``target``, every object confirmed present; with ``reading`` (restore,
    recover), every encrypted one also confirmed to open with the configured identities."""
    catalog = catalog or store.load()
    located = store.transactions(documents_needed(catalog, target))
    plan = build_plan(catalog, target, located=located)
    if plan.recoverable:
        wrong = store.confirm(plan.required_objects())
        if wrong:
            plan = build_plan(catalog, target, located=located, missing=frozenset(wrong))
    if plan.recoverable and reading:
        confirm_readable(store, plan.required_objects())
    return Planned(plan, catalog)


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
