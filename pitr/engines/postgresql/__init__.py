"""PostgreSQL engine: backups, WAL archiving and indexing, recovery, events."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from pitr.engines.base import Archived, Engine, SlotLag

if TYPE_CHECKING:  # annotations only: wal-push imports this module once per WAL segment
    from datetime import datetime
    from pathlib import Path

    from pitr.catalog import Catalog
    from pitr.catalog.model import Backup
    from pitr.catalog.store import CatalogStore
    from pitr.domain.checks import CheckReport
    from pitr.engines.base import Event, Replan
    from pitr.engines.postgresql.archive import PushContext
    from pitr.engines.postgresql.server import PgServer
    from pitr.engines.recovery import Recovered
    from pitr.storage.transfer import Compression


class PostgresEngine(Engine):
    @property
    def server(self) -> PgServer:
        from pitr.engines.postgresql.server import PgServer

        return PgServer(self.instance)

    def compression(self, parallel: int = 1) -> Compression:
        from pitr.storage.transfer import Compression

        base = Compression.from_settings(self.settings.repository)
        threads = base.threads or max(1, (os.cpu_count() or 1) // parallel)
        return replace(base, threads=threads)

    def push_context(self, store: CatalogStore) -> PushContext:
        """How WAL is pushed. Each segment is compressed in one thread, however many CPUs:
        at 16 MB, zstd's worker threads cost more than they save (13 ms in one thread
        against 22 ms with two workers, here); parallel pushes use the CPUs instead."""
        from pitr.engines.postgresql.archive import PushContext
        from pitr.storage.transfer import Compression

        base = Compression.from_settings(self.settings.repository)
        return PushContext(store, replace(base, threads=1), self.server.bindir)

    def wal_push(self, store: CatalogStore, path: Path) -> bool:
        from pitr.engines.postgresql.archive import wal_push

        return wal_push(self.push_context(store), path)

    def wal_fetch(self, store: CatalogStore, name: str, dest: Path, spool: Path | None) -> bool:
        from pitr.engines.postgresql.archive import wal_fetch

        return wal_fetch(store, name, dest, spool)

    def check(self, store: CatalogStore, report: CheckReport) -> None:
        from pitr.engines.postgresql.checks import check_instance

        check_instance(self.server, store, report)

    def backup(self, store: CatalogStore, kind: str | None) -> Backup:
        from pitr.engines.postgresql.backup import BackupOptions, take_backup

        partitions = max(1, min(self.settings.repository.concurrency, 4, os.cpu_count() or 1))
        options = BackupOptions(kind, self.compression(partitions), partitions)
        return take_backup(self.server, store, options)

    def archive(
        self, store: CatalogStore, *, follow: bool = False, duration: float | None = None
    ) -> Archived:
        from pitr.engines.postgresql.archive import archive_ready

        if follow:
            from functools import partial
            from pathlib import Path

            from pitr.engines.postgresql.follow import follow_wal
            from pitr.storage.runstate import write_follow

            beat = partial(write_follow, self.settings.lock_dir, self.instance.name)
            spool = Path(self.settings.spool_dir)
            return follow_wal(self.server, self.push_context(store), spool, duration, beat)
        pushed, already = archive_ready(
            self.push_context(store),
            self.server.datadir,
            workers=self.settings.repository.concurrency,
            on_done=lambda _name: None,
        )
        return Archived(pushed, already)

    def slot_lag(self) -> SlotLag | None:
        from pitr.engines.postgresql.follow import slot_lag

        return slot_lag(self.server)

    def restore(
        self, store: CatalogStore, replan: Replan, dest: Path, port: int | None
    ) -> Recovered:
        from pitr.engines.postgresql.recovery import restore_beside

        return restore_beside(store, self.server, replan, dest, port, self.settings.source)

    def recover(self, store: CatalogStore, replan: Replan) -> Recovered:
        from pitr.engines.postgresql.recovery import recover_in_place

        return recover_in_place(store, self.server, replan, self.settings.source)

    def events(
        self,
        store: CatalogStore,
        catalog: Catalog,
        start: datetime | None,
        end: datetime | None,
        *,
        rows: bool = False,
    ) -> list[Event]:
        from pitr.engines.postgresql.events import pg_events
        from pitr.engines.proc import find_tool

        waldump = find_tool("pg_waldump", self.server.bindir) if rows else None
        return pg_events(store, catalog, start, end, waldump=waldump)
