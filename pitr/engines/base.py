"""The one interface every database engine implements for the commands.

An engine knows its datastore and nothing about storage beyond the catalog store it is given:
it takes backups as streams, ships its logs with their index documents, restores a plan's
base and replays to its target, checks its instance, and tells what happened in its logs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # annotations only: wal-push imports this module once per WAL segment
    from datetime import datetime
    from pathlib import Path

    from pitr.catalog import Catalog
    from pitr.catalog.model import Backup
    from pitr.catalog.store import CatalogStore
    from pitr.config.settings import InstanceSettings, Settings
    from pitr.domain.checks import CheckReport
    from pitr.engines.recovery import Recovered
    from pitr.planner.plan import Plan

#: The plan for the command's target, proven against the repository as it is now. The command
#: makes it; an engine calls it again once it has archived the newest logs (they may hold the
#: target), so engines never reach up to the planning around the planner.
Replan: TypeAlias = Callable[[], "Plan"]


@dataclass
class Archived:
    """What ``archive`` shipped: counts, and for binlogs the files and the gaps (binlogs purged
    before pitr had them); ``--follow`` adds why it stopped and its local spool."""

    archived: int = 0
    already_archived: int = 0
    files: list[str] | None = None
    gaps: list[str] | None = None
    stopped_by: str | None = None
    spool: str | None = None


@dataclass(frozen=True)
class Event:
    """One committed transaction in the archived logs, for ``pitr events`` (docs/json.md).

    ``position`` is the commit record's LSN on PostgreSQL, where the transaction begins in a
    binlog. PostgreSQL's events carry an ``xid`` and the ``timeline``; MariaDB's and MySQL's a
    ``gtid`` (None: an anonymous MySQL one), the ``end`` and the binlog ``stream``.
    """

    time: datetime
    position: str
    log: str
    summary: str
    xid: int | None = None
    gtid: str | None = None
    timeline: int | None = None
    end: str | None = None
    stream: str | None = None

    @property
    def binlog(self) -> bool:
        """A MariaDB/MySQL event (PostgreSQL's have a timeline)."""
        return self.timeline is None


@dataclass(frozen=True)
class SlotLag:
    """The replication slot ``archive --follow`` streams from (PostgreSQL), as the server
    shows it: whether a receiver uses it, the WAL it holds back (bytes from its restart LSN
    to the server's current position) and ``wal_status`` (``lost``: WAL it needed is gone)."""

    name: str
    active: bool
    retained_bytes: int | None
    wal_status: str | None


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
    ) -> Archived:
        """Ship the logs not yet in the repository; ``follow``: keep streaming (for
        ``duration`` seconds, or until SIGTERM)."""

    def slot_lag(self) -> SlotLag | None:
        """The instance's ``archive --follow`` replication slot, if it has one."""
        return None

    @abstractmethod
    def restore(
        self, store: CatalogStore, replan: Replan, dest: Path, port: int | None
    ) -> Recovered:
        """Restore into a new directory beside the instance (and start it on ``port``)."""

    @abstractmethod
    def recover(self, store: CatalogStore, replan: Replan) -> Recovered:
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
    ) -> list[Event]:
        """The transactions in the archived logs, oldest first."""
