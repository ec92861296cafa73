"""The one interface every database engine implements for the commands.

An engine knows its datastore and nothing about storage beyond the catalog store it is given:
it takes backups as streams, ships its logs with their index documents, restores a plan's
base and replays to its target, checks its instance, and tells what happened in its logs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: wal-push imports this module once per WAL segment
    from datetime import datetime
    from pathlib import Path

    from pitr.catalog import Catalog
    from pitr.catalog.model import Backup
    from pitr.catalog.store import CatalogStore
    from pitr.commands.check import CheckReport
    from pitr.config.settings import InstanceSettings, Settings
    from pitr.domain.targets import Target


class Engine(ABC):
    def __init__(self, settings: Settings, instance: InstanceSettings) -> None:
        self.settings = settings
        self.instance = instance

    @abstractmethod
    def check(self, store: CatalogStore, report: CheckReport) -> None:
        """Add the instance's own checks (reachable, logging and archiving set up)."""

    @abstractmethod
    def backup(self, store: CatalogStore, kind: str | None) -> Backup:
        """Take a backup and publish it; ``kind`` full/diff, or None for the default."""

    @abstractmethod
    def archive(
        self, store: CatalogStore, *, follow: bool = False, duration: float | None = None
    ) -> dict[str, Any]:
        """Ship the logs not yet in the repository; ``follow``: keep streaming (for
        ``duration`` seconds, or until SIGTERM)."""

    @abstractmethod
    def restore(
        self, store: CatalogStore, target: Target, dest: Path, port: int | None
    ) -> dict[str, Any]:
        """Restore into a new directory beside the instance (and start it on ``port``)."""

    @abstractmethod
    def recover(self, store: CatalogStore, target: Target) -> dict[str, Any]:
        """Recover the instance in place, keeping the replaced data directory."""

    @abstractmethod
    def events(
        self,
        store: CatalogStore,
        catalog: Catalog,
        start: datetime | None,
        end: datetime | None,
        *,
        rows: bool = False,
    ) -> list[dict[str, Any]]:
        """The transactions in the archived logs, oldest first."""


def engine_for(settings: Settings, instance: InstanceSettings) -> Engine:
    """The engine of ``instance``; only its modules (and drivers) get imported."""
    if instance.engine == "postgresql":
        from pitr.engines.postgresql import PostgresEngine

        return PostgresEngine(settings, instance)
    from pitr.engines.mysql import MysqlEngine

    return MysqlEngine(settings, instance)
