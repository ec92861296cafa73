"""MariaDB and MySQL engine: mariadb-backup / xtrabackup backups, binlog archiving and
indexing, recovery by binlog replay to a GTID, time or position, events, instance checks.

MariaDB 10.11 is what runs (and is tested) here; MySQL 8 with Percona XtraBackup goes through
the same adapter with MySQL's tools and GTID sets (see docs/mariadb.md for what was not run
against a live MySQL server).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from pitr.catalog import Catalog
from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.domain.checks import CheckReport
from pitr.engines.base import Archived, Engine, Event, Replan
from pitr.engines.mysql.server import MyServer
from pitr.engines.recovery import Recovered
from pitr.storage.transfer import Compression


class MysqlEngine(Engine):
    @property
    def server(self) -> MyServer:
        return MyServer(self.instance)

    def compression(self) -> Compression:
        base = Compression.from_settings(self.settings.repository)
        return replace(base, threads=base.threads or os.cpu_count() or 1)

    def check(self, store: CatalogStore, report: CheckReport) -> None:
        from pitr.engines.mysql.checks import check_instance

        check_instance(self.server, store, report, self.compression(), self.settings.spool_dir)

    def backup(self, store: CatalogStore, kind: str | None) -> Backup:
        from pitr.engines.mysql.backup import take_backup
        from pitr.errors import UsageError

        if kind == "incr":
            raise UsageError(
                f"--type incr is for PostgreSQL; {self.instance.engine} takes full and "
                "differential backups",
                hint="pitr backup --type diff (mariadb-backup: every page changed since the full)",
            )
        return take_backup(self.server, store, kind, self.compression(), self.settings.spool_dir)

    def archive(
        self, store: CatalogStore, *, follow: bool = False, duration: float | None = None
    ) -> Archived:
        from pitr.engines.mysql.archive import Shipper, archive_closed

        server = self.server
        shipper = Shipper.of(store, server, self.compression())
        if follow:
            from functools import partial

            from pitr.engines.mysql.follow import follow_binlogs
            from pitr.storage.runstate import write_follow

            beat = partial(write_follow, self.settings.lock_dir, self.instance.name)
            return follow_binlogs(server, shipper, Path(self.settings.spool_dir), duration, beat)
        archive_closed(server, shipper)
        return shipper.result()

    def restore(
        self, store: CatalogStore, replan: Replan, dest: Path, port: int | None
    ) -> Recovered:
        from pitr.engines.mysql.recovery import restore_beside

        return restore_beside(store, self.server, replan, dest, port, self.compression())

    def recover(self, store: CatalogStore, replan: Replan) -> Recovered:
        from pitr.engines.mysql.recovery import recover_in_place

        return recover_in_place(store, self.server, replan, self.compression())

    def events(
        self,
        store: CatalogStore,
        catalog: Catalog,
        start: datetime | None,
        end: datetime | None,
        *,
        rows: bool = False,
    ) -> list[Event]:
        from pitr.engines.mysql.events import binlog_events

        return binlog_events(store, catalog, start, end)
