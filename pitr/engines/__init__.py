"""The database engines behind one interface (:class:`pitr.engines.base.Engine`).

Nothing is imported here at start-up: ``engine_for`` loads only the engine (and the drivers)
the instance needs, and ``pitr wal-push`` loads only the PostgreSQL modules it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pitr.catalog.store import CatalogStore
    from pitr.config.settings import InstanceSettings, Settings
    from pitr.engines.base import Engine


def engine_for(settings: Settings, instance: InstanceSettings) -> Engine:
    """The engine of ``instance``; only its modules (and drivers) get imported."""
    if instance.engine == "postgresql":
        from pitr.engines.postgresql import PostgresEngine

        return PostgresEngine(settings, instance)
    from pitr.engines.mysql import MysqlEngine

    return MysqlEngine(settings, instance)


def engine_and_store(settings: Settings, instance: str | None) -> tuple[Engine, CatalogStore]:
    """The engine of the named instance (the only one when None) and its catalog store."""
    from pitr.catalog.store import open_catalog

    inst = settings.instance(instance)
    return engine_for(settings, inst), open_catalog(settings, inst)
