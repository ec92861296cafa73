"""Full and differential backups with mariadb-backup (MySQL: the clone plugin, see
``pitr.engines.mysql.clone``, or xtrabackup through the same adapter as mariadb-backup).

``<tool> --backup --stream=xbstream`` writes the backup to its stdout, which goes through the
transfer pipeline (zstd, sha256, upload in parts): nothing is staged on disk. The checkpoints
and the binlog position come from ``--extra-lsndir`` (a small temporary directory). A
differential is ``--incremental-lsn=<its full's to_lsn>``: every page changed since the full.

Before the backup, the closed binlogs are archived (so the open one joins the right stream);
after it, ``FLUSH BINARY LOGS`` closes the binlog the backup's position lies in and it is
archived too: a published backup is restorable at once. The manifest records that file's
head (see ``streams``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from pitr import __version__
from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.domain.positions import key_of
from pitr.domain.timeutil import compact_id_time, utcnow
from pitr.engines import proc
from pitr.engines.mysql.archive import Shipper, archive_closed, flush_and_archive
from pitr.engines.mysql.server import MyServer
from pitr.engines.mysql.streams import read_head
from pitr.engines.mysql.xtrainfo import BinlogPosition, binlog_position, read_checkpoints
from pitr.errors import PreconditionFailed, ToolFailed
from pitr.planner.common import fulls
from pitr.storage.transfer import Compression, StoredObject

log = logging.getLogger("pitr.mysql")
OBJECT = "backup.xbstream"


def _parent_of(catalog: Any, system: str, kind: str | None, stream: str) -> Backup | None:
    """The full a differential is based on: the newest of this server, on the binlog stream
    the server writes now (after an in-place recovery the data directory descends from
    another backup: a differential against a full it does not descend from would be wrong,
    so a new stream means a new full)."""
    candidates = [b for b in fulls(catalog, system) if "to_lsn" in b.engine_meta]
    parent = candidates[-1] if candidates else None
    if kind == "full":
        return None
    if parent is None or parent.stream != stream:
        if kind == "diff":
            why = "no full backup" if parent is None else (
                f"the newest full ({parent.id}) was taken on another binlog stream "
                f"({parent.stream}, now {stream})")  # fmt: skip
            raise PreconditionFailed(
                f"instance {catalog.instance}: cannot take a differential: {why}",
                hint="take a full backup first (pitr backup --type full)",
            )
        return None
    return parent


def take_backup(
    server: MyServer, store: CatalogStore, kind: str | None, compression: Compression,
    spool_dir: str,
) -> Backup:  # fmt: skip
    if server.flavor == "mysql":
        from pitr.engines.mysql.checks import require_replayable

        require_replayable(server)
    shipper = Shipper.of(store, server, compression)
    archive_closed(server, shipper)  # the backup's binlog then joins the right stream
    catalog = store.load()
    shipper.backups = catalog.backups
    system = server.system()
    current, start_pos = _master_status(server)
    current_head = read_head(server.binlog_basename().parent / current, system)
    stream_now, _ = shipper.stream_of(current_head)
    if server.settings.clones and kind == "diff":
        raise PreconditionFailed(
            f"instance {store.instance}: the clone method makes full backups only",
            hint='take a full backup, or set backup_method = "xtrabackup" for differentials',
        )
    parent = None if server.settings.clones else _parent_of(catalog, system, kind, stream_now)
    kind = "diff" if parent is not None else "full"
    started = utcnow()
    backup_id = f"{compact_id_time(started)}-{'F' if kind == 'full' else 'D'}"
    log.info("backup %s (%s) started", backup_id, kind)
    if server.settings.clones:
        from pitr.engines.mysql.clone import OBJECT as TAR
        from pitr.engines.mysql.clone import clone_backup

        key = store.layout.backup_dir(backup_id) + TAR + compression.suffix
        stored, position = clone_backup(server, store.storage, key, spool_dir, backup_id,
                                        compression)  # fmt: skip
        meta: dict[str, Any] = {"tool": "clone", "format": "tar"}
    else:
        key = store.layout.backup_dir(backup_id) + OBJECT + compression.suffix
        stored, position, meta = _physical(server, store, key, parent, compression)
    ended = utcnow()
    head = read_head(server.binlog_basename().parent / position.file, system)
    flush_and_archive(server, shipper)  # the binlog holding its position: restorable at once
    stream, _ = shipper.stream_of(head)
    backup = Backup(
        id=backup_id,
        type=kind,  # type: ignore[arg-type]
        parent=parent.id if parent else None,
        instance=store.instance,
        engine=server.flavor,
        system=system,
        start_time=started,
        end_time=ended,
        start=start_pos,
        end=position.text,
        start_key=key_of(start_pos.split(":")[0], int(start_pos.rsplit(":", 1)[1])),
        end_key=key_of(position.file, position.position),
        stream=stream,
        objects=(stored,),
        gtid_state=position.gtids,
        engine_meta={
            **meta,
            "binlog_file": position.file,
            "binlog_position": position.position,
            "binlog_head": head.to_dict(),
            "server_version": server.variables("version")["version"],
            "server_id": int(server.variables("server_id")["server_id"]),
        },
        host=socket.gethostname(),
        pitr_version=__version__,
    )
    store.publish_backup(backup)
    log.info("backup %s published: %d bytes stored, consistent at %s (GTID %s)",
             backup_id, backup.bytes, backup.end, backup.gtid_state)  # fmt: skip
    return backup


def _physical(
    server: MyServer, store: CatalogStore, key: str, parent: Backup | None,
    compression: Compression,
) -> tuple[StoredObject, BinlogPosition, dict[str, Any]]:  # fmt: skip
    """mariadb-backup / xtrabackup ``--stream=xbstream`` into ``key``."""
    lsndir = Path(tempfile.mkdtemp(prefix="pitr-backup-"))
    try:
        with server.option_file() as options:
            argv = [
                server.tool("backup"), f"--defaults-extra-file={options}", "--backup",
                "--stream=xbstream", f"--target-dir={lsndir / 'target'}",
                f"--extra-lsndir={lsndir}", f"--parallel={max(1, min(4, os.cpu_count() or 1))}",
            ]  # fmt: skip
            if parent is not None:
                argv.append(f"--incremental-lsn={parent.engine_meta['to_lsn']}")
            stored = proc.upload_output(argv, store.storage, key, compression)
        checkpoints = read_checkpoints(lsndir)
        position = binlog_position(lsndir)
    finally:
        shutil.rmtree(lsndir, ignore_errors=True)
    if position is None:
        raise PreconditionFailed(
            f"instance {store.instance}: the backup has no binlog position (binary log off?)",
            hint="start the server with log_bin",
        )
    if parent is not None and checkpoints.from_lsn != parent.engine_meta["to_lsn"]:
        raise ToolFailed(f"differential starts at LSN {checkpoints.from_lsn}, "
                         f"not at its full's to_lsn {parent.engine_meta['to_lsn']}")  # fmt: skip
    meta = {
        "backup_type": checkpoints.backup_type,
        "from_lsn": checkpoints.from_lsn,
        "to_lsn": checkpoints.to_lsn,
        "last_lsn": checkpoints.last_lsn,
        "tool": Path(argv[0]).name,
        "format": "xbstream",
    }
    return stored, position, meta


def _master_status(server: MyServer) -> tuple[str, str]:
    """The open binlog and its position now."""
    status = server.binlog_status()
    if status is None:
        raise PreconditionFailed(
            f"instance {server.settings.name}: the binary log is off",
            hint="start the server with log_bin (and binlog_format = ROW)",
        )
    return status[0], f"{status[0]}:{status[1]}"
