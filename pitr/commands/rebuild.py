"""``pitr catalog rebuild``: recompute every summary from the per-object documents."""

from __future__ import annotations

from pitr.catalog.store import CatalogStore, open_catalog
from pitr.catalog.summary import page_refs, rebuild_stream
from pitr.commands.locks import lock_for
from pitr.config.settings import Settings


def rebuild(settings: Settings, instance: str | None, lock_wait: float) -> dict[str, int]:
    """``rebuild_catalog`` under the instance lock: the counts of what the summaries hold."""
    store = open_catalog(settings, settings.instance(instance))
    with lock_for(settings, store, "catalog rebuild", lock_wait):
        return rebuild_catalog(store)


def rebuild_catalog(store: CatalogStore) -> dict[str, int]:
    """Rewrite the backups summary from the manifests and each stream's pages from its index
    documents; pages of streams that no longer have documents are removed."""
    storage, layout = store.storage, store.layout
    listing = store.list_backups()
    backups = [store.read_manifest(key) for key in listing.manifests.values()]
    store.write_backups_summary(sorted(backups, key=lambda b: (b.end_time, b.id)))
    streams = {
        p.removeprefix(layout.logs).rstrip("/") for p in storage.list_prefixes(layout.logs)
    } | set(page_refs(storage, layout))
    logs = sum(len(rebuild_stream(storage, layout, stream)) for stream in sorted(streams))
    return {"backups": len(backups), "logs": logs, "streams": len(streams)}
