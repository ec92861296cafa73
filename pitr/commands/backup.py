"""``pitr backup``: the engine takes a backup and publishes it, under the instance lock; the
catalog summary is compacted after."""

from __future__ import annotations

from pitr.catalog.model import Backup
from pitr.catalog.summary import compact_all
from pitr.commands.locks import lock_for
from pitr.config.settings import Settings
from pitr.engines import engine_and_store


def backup(settings: Settings, instance: str | None, kind: str | None, lock_wait: float) -> Backup:
    engine, store = engine_and_store(settings, instance)
    with lock_for(settings, store, "backup", lock_wait):
        result = engine.backup(store, kind)
        compact_all(store.storage, store.layout)
    return result
