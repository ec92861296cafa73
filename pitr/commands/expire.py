"""``pitr expire``: apply the retention policy (decided in ``pitr.planner.retention``).

The deletions go manifests first (the backup disappears at once), data objects after, index
documents before log data, and the summaries are rewritten without what went. Then the copies
of open binlogs (``archive --follow``) whose closed file is archived, or expired, go too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pitr.catalog import Catalog, openlogs
from pitr.catalog.segments import rows_of
from pitr.catalog.store import CatalogStore, open_catalog
from pitr.catalog.summary import page_refs, read_page, write_pages
from pitr.commands.locks import lock_for
from pitr.config.settings import RetentionSettings, Settings
from pitr.domain.timeutil import utcnow
from pitr.planner.retention import Expiry, check_policy, plan_expiry


@dataclass(frozen=True)
class Expired:
    """What ``pitr expire`` deleted (or, with ``--dry-run``, would delete)."""

    dry_run: bool
    expiry: Expiry


def expire(settings: Settings, instance: str | None, dry_run: bool, lock_wait: float) -> Expired:
    """Apply the policy under the instance lock; a dry run is a read and takes no lock. An
    empty policy is refused before anything is opened."""
    policy = settings.retention
    check_policy(policy)
    store = open_catalog(settings, settings.instance(instance))
    if dry_run:
        return Expired(True, expiry_of(store, policy))
    with lock_for(settings, store, "expire", lock_wait):
        catalog = store.load()
        expiry = expiry_of(store, policy, catalog)
        apply_expiry(store, expiry)
        openlogs.remove_obsolete(store.storage, store.layout, catalog)
    return Expired(False, expiry)


def expiry_of(
    store: CatalogStore, policy: RetentionSettings, catalog: Catalog | None = None
) -> Expiry:
    """What the policy expires in the repository now, unfinished backups included."""
    catalog = catalog or store.load()
    return plan_expiry(catalog, policy, utcnow(), store.list_backups().orphans)


def apply_expiry(store: CatalogStore, expiry: Expiry) -> None:
    storage, layout = store.storage, store.layout
    for backup in expiry.backups:
        storage.delete(layout.manifest(backup.id))
    store.write_backups_summary(expiry.keep)
    for backup in expiry.backups:
        for obj in backup.objects:
            storage.delete(obj.key)
    for keys in expiry.orphans.values():
        for key in keys:
            storage.delete(key)
    by_stream: dict[str, set[str]] = defaultdict(set)
    for seg in expiry.segments:
        storage.delete(layout.log_index(seg.stream, seg.name))
        storage.delete(seg.object.key)
        by_stream[seg.stream].add(seg.name)
    refs = page_refs(storage, layout)
    for stream, names in by_stream.items():
        pages = refs.get(stream, [])
        rows = [
            row for ref in pages for row in rows_of(read_page(storage, ref)) if row[0] not in names
        ]
        write_pages(storage, layout, stream, rows, replace=pages)
