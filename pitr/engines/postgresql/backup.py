"""Full and differential backups with PostgreSQL's low-level API, from one session.

``pg_backup_start`` → the data directory streamed as tar partitions, each compressed and
uploaded in parallel (nothing staged) → ``pg_backup_stop`` → the manifest, published only once
the WAL the backup needs is in the repository (an archive_command that keeps failing ends the
wait). A differential sends only the files whose size or modification time differ from its
full's, and those whose time stamps cannot be trusted (see ``_changed``) once their CRC-32
shows they differ; the others are restored from the full. An incremental reads the same files
against its parent's records, and of the relation files only the changed pages go
(``pitr.engines.postgresql.incremental``).
"""

from __future__ import annotations

import logging
import socket
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitr import __version__
from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.domain.positions import format_lsn, parse_lsn, parse_wal_name, segment_name, stream_of
from pitr.domain.timeutil import compact_id_time, utcnow
from pitr.engines.postgresql.files import CHUNK, DataFile, Sent, TarStream, partition, scan
from pitr.engines.postgresql.incremental import (
    Paged,
    incremental_parent,
    records_of,
    upload_increment,
)
from pitr.engines.postgresql.server import ArchiverState, PgServer
from pitr.engines.postgresql.standby import Standby
from pitr.engines.postgresql.versions import major_of
from pitr.errors import PreconditionFailed
from pitr.planner.common import fulls
from pitr.storage.base import Storage
from pitr.storage.transfer import Compression, StoredObject, upload

log = logging.getLogger("pitr.postgresql")
#: How long before the full started a recorded modification time stops being trusted: a file
#: written during the full (or within the file system's time stamp resolution of it) may
#: change again and keep its size and time stamp.
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class BackupOptions:
    kind: str | None  # "full", "diff", "incr" or None (full when there is none yet)
    compression: Compression
    partitions: int = 2


def _upload_partition(
    storage: Storage, key: str, files: list[DataFile], compression: Compression
) -> tuple[StoredObject, list[Sent]]:
    """One tar stream, made as the compressor reads it."""
    stream = TarStream(files)
    stored = upload(storage, key, stream, compression)
    return stored, stream.sent


#: Every user table (plain, partitioned, materialized view) with the relations that go with
#: it: its indexes, its TOAST table and that table's index — a DROP or TRUNCATE lists them all
#: in its commit record, and each must read as the table's name.
_RELATIONS_SQL = """
WITH tables AS (
    SELECT c.oid, c.relfilenode, c.reltoastrelid, n.nspname || '.' || c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'
), parts AS (
    SELECT oid AS owner, oid AS rel FROM tables
    UNION ALL SELECT oid, reltoastrelid FROM tables WHERE reltoastrelid <> 0
), everything AS (
    SELECT owner, rel FROM parts
    UNION ALL SELECT p.owner, i.indexrelid FROM parts p JOIN pg_index i ON i.indrelid = p.rel
)
SELECT e.rel, c.relfilenode, t.name, e.rel = e.owner AS main
FROM everything e JOIN tables t ON t.oid = e.owner JOIN pg_class c ON c.oid = e.rel
"""


def _relations(server: PgServer) -> dict[str, dict[str, Any]]:
    """Table names by OID and file node, per database: ``pitr events`` names what WAL only
    knows by number (a dropped table, above all)."""
    found: dict[str, dict[str, Any]] = {}
    databases = server.query("SELECT oid, datname FROM pg_database WHERE datallowconn")
    for oid, name in databases:
        try:
            with server.session(name) as conn:
                rows = conn.execute(_RELATIONS_SQL).fetchall()
        except PreconditionFailed:
            continue
        tables: dict[str, str] = {}  # the tables themselves
        parts: dict[str, str] = {}  # their indexes and TOAST relations
        for rel_oid, filenode, table, main in rows:
            into = tables if main else parts
            into[str(rel_oid)] = table
            if filenode:
                into[str(filenode)] = table
        found[str(oid)] = {"name": name, "tables": tables, "parts": parts}
    return found


def _changed(f: DataFile, records: dict[str, list[Any]], racy_from_ns: int) -> bool:
    """Must a differential send this file? ``records`` are the full's ([size, mtime_ns,
    crc32] by name). A new file, or another size or modification time: yes. The same size
    and time stamp: no — unless the recorded time stamp is at or after ``racy_from_ns`` (the
    full's start less ``RACY_WINDOW_NS``): then the file is read and sent when its CRC-32
    differs from the copy the full holds. Directories always go: they cost nothing."""
    if f.is_dir:
        return True
    before = records.get(f.name)
    if before is None:
        return True
    size, mtime_ns, crc = before[0], before[1], before[2]
    if size != f.size or mtime_ns != f.mtime_ns:
        return True
    return bool(mtime_ns >= racy_from_ns and _crc32(f.source) != crc)


def _crc32(path: Path) -> int | None:
    """The file's CRC-32, as ``TarStream`` computes it (None: it is gone)."""
    crc = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                crc = zlib.crc32(chunk, crc)
    except FileNotFoundError:
        return None
    return crc


def _to_send(files: list[DataFile], parent: Backup) -> list[DataFile]:
    records = parent.engine_meta.get("files", {})
    racy_from = int(parent.start_time.timestamp() * 1e9) - RACY_WINDOW_NS
    return [f for f in files if _changed(f, records, racy_from)]


def _one(conn: Any, sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params or None).fetchone()
    assert row is not None
    return row[0]


def take_backup(server: PgServer, store: CatalogStore, options: BackupOptions) -> Backup:
    catalog = store.load()
    with server.session() as conn:
        system = str(_one(conn, "SELECT system_identifier FROM pg_control_system()"))
        standby = Standby.of(server, conn, store.instance, system)  # None on a primary
        parent = next(reversed(fulls(catalog, system)), None)
        kind = options.kind or ("diff" if parent else "full")
        if kind != "full" and parent is None:
            raise PreconditionFailed(
                f"instance {store.instance}: no full backup to base "
                f"{'an incremental' if kind == 'incr' else 'a differential'} on",
                hint="take a full backup first (pitr backup --type full)",
            )
        settings = _settings(conn, store.instance)
        block = int(settings["block_size"])
        major = major_of(int(settings["server_version_num"]))
        server.require_major(major, f"instance {store.instance}", ["pg_waldump"])
        if kind == "incr":
            parent = incremental_parent(catalog, system, conn, store.instance)
        archiver = server.archiver_state()
        started = utcnow()
        backup_id = f"{compact_id_time(started)}-{kind[0].upper()}"
        start_lsn = parse_lsn(_one(conn, "SELECT pg_backup_start(%s, true)::text", backup_id))
        timeline = int(_one(conn, "SELECT timeline_id FROM pg_control_checkpoint()"))
        standby = standby.started(timeline) if standby else None
        log.info("backup %s: started at %s", backup_id, format_lsn(start_lsn))
        try:
            files, tablespaces = scan(server.datadir)
            send = _to_send(files, parent) if parent and kind != "full" else files
            relations = _relations(server)
            config_files = _outside_config(conn, server.datadir)
            last, send = Standby.held_back(send) if standby else ([], send)
            objects, sent, paged = _upload_files(
                store, backup_id, (send, last), options, parent if kind == "incr" else None, block
            )
        except BaseException:
            conn.execute("SELECT pg_backup_stop(false)")
            raise
        # Not pg_backup_stop(true): it waits for archive_command without a limit. The WAL
        # switch it makes gets the stop segment archived; pitr waits for it itself.
        stop = "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
        row = standby.stop(conn, stop, backup_id) if standby else conn.execute(stop).fetchone()
        assert row is not None
        stop_lsn, label, spcmap = parse_lsn(row[0]), row[1], row[2]
    ended = utcnow()
    segment_size = int(settings["wal_segment_size"])
    if standby:
        standby.wait_for_wal(store, backup_id, (start_lsn, stop_lsn), segment_size, archiver)
    else:
        _wait_for_wal(store, server, timeline, stop_lsn, segment_size, archiver)
    # unchanged files (all of them, for a full: none): as the parent recorded them
    inherited = parent.engine_meta.get("files", {}) if parent and kind != "full" else {}
    records = records_of(inherited, {f.name for f in files}, sent, paged)
    backup = Backup(
        id=backup_id,
        type=kind,  # type: ignore[arg-type]
        parent=parent.id if kind != "full" and parent else None,
        instance=store.instance,
        engine="postgresql",
        system=system,
        start_time=started,
        end_time=ended,
        start=format_lsn(start_lsn),
        end=format_lsn(stop_lsn),
        start_key=start_lsn,
        end_key=stop_lsn,
        stream=stream_of(timeline),
        objects=tuple(objects),
        engine_meta={
            "wal_segment_size": segment_size,
            "timeline": timeline,
            "server_version_num": int(settings["server_version_num"]),
            "backup_label": label,
            "tablespace_map": spcmap or None,
            "tablespaces": tablespaces,
            "directories": sorted(f.name for f in files if f.is_dir),
            "files": records,
            "relations": relations,
            "config_files": config_files,
            "block_size": block,
            **({"page_map": objects[-1].key} if kind == "incr" else {}),
        },
        host=socket.gethostname(),
        pitr_version=__version__,
        server_major=str(major),
    )
    store.publish_backup(backup)
    log.info("backup %s: published, %d bytes stored", backup_id, backup.bytes)
    return backup


def _upload_files(
    store: CatalogStore,
    backup_id: str,
    files: tuple[list[DataFile], list[DataFile]],
    options: BackupOptions,
    incr_parent: Backup | None,
    block: int,
) -> tuple[list[StoredObject], list[Sent], list[Paged]]:
    """The files to send, then the held-back ones (a standby's pg_control, see standby.py)
    after every other: whole, or only the changed pages of an incremental on ``incr_parent``."""
    send, last = files
    if incr_parent is not None:
        return upload_increment(
            store, backup_id, send, since=incr_parent.start_key, block=block,
            old_sizes={k: v[0] for k, v in incr_parent.engine_meta["files"].items()},
            compression=options.compression, partitions=options.partitions, last=last,
        )  # fmt: skip
    parts = _upload_all(store, backup_id, send, options)
    if last:
        parts += _upload_all(store, backup_id, last, options, first=len(parts))
    return [o for o, _ in parts], [s for _, p in parts for s in p], []


def _outside_config(conn: Any, datadir: Path) -> dict[str, str]:
    """Configuration files kept outside the data directory (Debian keeps them in
    /etc/postgresql): their text, so that a restore beside the instance can start."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('config_file', 'hba_file', 'ident_file')"
    ).fetchall()
    names = {
        "config_file": "postgresql.conf",
        "hba_file": "pg_hba.conf",
        "ident_file": "pg_ident.conf",
    }
    found: dict[str, str] = {}
    for setting, value in rows:
        path = Path(value)
        if path.parent != datadir and path.is_file():
            found[names[setting]] = path.read_text(errors="replace")
    return found


def _settings(conn: Any, instance: str) -> dict[str, str]:
    settings = dict(
        conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('wal_segment_size', 'server_version_num', 'archive_mode', 'block_size')"
        ).fetchall()
    )
    if settings.get("archive_mode") == "off":
        raise PreconditionFailed(
            f"instance {instance}: archive_mode is off: the backup could never be made "
            "consistent from the repository",
            hint="set archive_mode = on and archive_command = 'pitr wal-push %p'",
        )
    return settings


def _upload_all(
    store: CatalogStore,
    backup_id: str,
    files: list[DataFile],
    options: BackupOptions,
    first: int = 0,
) -> list[tuple[StoredObject, list[Sent]]]:
    """Partitions in parallel, each its own compressed tar object (numbered from ``first``)."""
    groups = partition(files, options.partitions)
    suffix = options.compression.suffix
    keys = [
        store.layout.backup_dir(backup_id) + f"data-{n}.tar{suffix}"
        for n in range(first, first + len(groups))
    ]
    with ThreadPoolExecutor(len(groups), thread_name_prefix="backup") as pool:
        futures = [
            pool.submit(_upload_partition, store.storage, key, group, options.compression)
            for key, group in zip(keys, groups, strict=True)
        ]
        return [f.result() for f in futures]


def _wait_for_wal(
    store: CatalogStore,
    server: PgServer,
    timeline: int,
    stop_lsn: int,
    segment_size: int,
    archiver: ArchiverState,
) -> None:
    """The backup is only restorable with the WAL up to its stop point: wait until the
    segment holding it is in the repository (archive_command must be ``pitr wal-push`` into
    this repository). An archiver that keeps failing ends the wait at once."""
    name = segment_name(timeline, stop_lsn - 1 if stop_lsn % segment_size == 0 else stop_lsn,
                        segment_size)  # fmt: skip
    wal = parse_wal_name(name)
    assert wal is not None
    wait = server.settings.archive_wait
    deadline = time.monotonic() + wait
    while store.segment_index(wal.stream, name) is None:
        failing = server.archiver_failing(archiver)
        if failing:
            raise PreconditionFailed(
                f"WAL segment {name}, needed to restore this backup, cannot reach the "
                f"repository: archive_command fails ({failing}); the backup is not published",
                hint="see PostgreSQL's log; archive_command must be 'pitr wal-push %p' with "
                "the same repository",
            )
        if time.monotonic() > deadline:
            raise PreconditionFailed(
                f"WAL segment {name}, needed to restore this backup, did not reach the "
                f"repository within {wait:g} s: the backup is not published",
                hint="archive_command must be 'pitr wal-push %p' with the same repository",
            )
        time.sleep(0.2)
