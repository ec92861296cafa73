"""MySQL backups with the clone plugin (``backup_method = "clone"``, MySQL's default).

``CLONE LOCAL DATA DIRECTORY`` makes a consistent physical copy of the instance that a server
starts with no prepare step. Where the copy is consistent in the binlog (file, position and
``gtid_executed``) the server records only once a server has started on it:
``performance_schema.clone_status`` is empty right after the clone. So pitr starts the copy
once, without networking and without a binlog of its own, reads those three values, and kills
it: the position is the copy's own, never guessed from the instance around the clone. Then the
copy is streamed to the repository as a tar archive (``tar`` piped into the transfer pipeline:
zstd, sha256, upload in parts) and deleted.

The copy needs free space the size of the instance's data under ``clone_dir`` (default
``<spool_dir>/<instance>/clone``, a directory the server's OS user may write): checked before
the clone (``check`` says how much). The clone method makes full backups only: a plan is a full
plus binlogs (docs/mysql.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pitr.engines import proc
from pitr.engines.mysql.replay import owner_of
from pitr.engines.mysql.server import MyServer, alive, wait_for
from pitr.engines.mysql.xtrainfo import BinlogPosition
from pitr.errors import PreconditionFailed, ToolFailed
from pitr.storage.base import Storage
from pitr.storage.transfer import Compression, StoredObject

log = logging.getLogger("pitr.mysql")
OBJECT = "backup.tar"
DATA = "data"
HEADROOM = 1.1  # free space wanted: the data's size and a tenth more
PLUGIN_HINT = "INSTALL PLUGIN clone SONAME 'mysql_clone.so' (and GRANT BACKUP_ADMIN)"
#: the server on the copy makes no TLS certificates nor RSA keys (seconds of CPU, and files
#: that would be backed up), leaves a redo log of 8 MiB, not 100 (less to stream), reads no
#: pages back into its buffer pool and runs no events
QUICK_START = (
    "--auto-generate-certs=OFF",
    "--innodb-buffer-pool-load-at-startup=OFF",
    "--innodb-buffer-pool-dump-at-shutdown=OFF",
    "--event-scheduler=OFF",
    "--loose-caching-sha2-password-auto-generate-rsa-keys=OFF",
    "--loose-sha256-password-auto-generate-rsa-keys=OFF",
    "--loose-innodb-redo-log-capacity=8M",
)
#: files of the copy that belong to the server pitr started on it, not to the backup
NOT_BACKED_UP = ("auto.cnf", "mysqld-auto.cnf")


def require_clone_plugin(server: MyServer) -> str:
    """The clone plugin must be ACTIVE; returns its version."""
    rows = server.query("SELECT PLUGIN_STATUS, PLUGIN_VERSION FROM information_schema.PLUGINS "
                        "WHERE PLUGIN_NAME = 'clone'")  # fmt: skip
    if not rows or str(rows[0][0]).upper() != "ACTIVE":
        state = "not installed" if not rows else f"{rows[0][0]}"
        raise PreconditionFailed(
            f"instance {server.settings.name}: the clone plugin is {state} "
            '(backup_method = "clone")',
            hint=PLUGIN_HINT,
        )
    return str(rows[0][1])


def data_size(server: MyServer) -> int:
    """Bytes the clone will write: the InnoDB files the server reports (tablespaces, undo,
    system), and its redo log capacity."""
    rows = server.query("SELECT COALESCE(SUM(TOTAL_EXTENTS * EXTENT_SIZE), 0) "
                        "FROM information_schema.FILES")  # fmt: skip
    redo = server.variables("innodb_redo_log_capacity")["innodb_redo_log_capacity"]
    return int(rows[0][0] or 0) + (int(redo) if redo.isdigit() else 0)


def clone_root(server: MyServer, spool_dir: str) -> Path:
    configured = server.settings.clone_dir
    return Path(configured) if configured else Path(spool_dir) / server.settings.name / "clone"


def check_space(server: MyServer, where: Path) -> str:
    """``PreconditionFailed`` when ``where``'s file system lacks the room for a clone."""
    need = int(data_size(server) * HEADROOM)
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    text = f"needs {_mib(need)} free in {where}, {_mib(free)} free"
    if free < need:
        raise PreconditionFailed(
            f"instance {server.settings.name}: too little space for a clone backup: {text}",
            hint="free space there, or set clone_dir to a larger file system",
        )
    return text


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _owned_like(path: Path, datadir: Path) -> None:
    """The server writes the copy: ``path`` belongs to the server's OS user."""
    if os.geteuid() == 0 and datadir.exists():
        st = datadir.stat()
        os.chown(path, st.st_uid, st.st_gid)


def make_copy(server: MyServer, spool_dir: str, backup_id: str) -> Path:
    """``CLONE LOCAL`` into a new directory; returns the directory holding ``data``."""
    root = clone_root(server, spool_dir)
    check_space(server, root)
    root.mkdir(mode=0o750, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{backup_id}.", dir=root))
    work.chmod(0o750)
    for path in (root, work):
        _owned_like(path, server.datadir)
    log.info("cloning %s into %s", server.where(), work / DATA)
    server.query("CLONE LOCAL DATA DIRECTORY = %s", str(work / DATA))
    return work


def copy_position(server: MyServer, work: Path) -> BinlogPosition:
    """Start a server on the copy (no networking, no binlog), read where the copy is
    consistent from ``performance_schema.clone_status``, and kill it: a clean shutdown took
    1.5 s of a backup, and the copy is then what a crash leaves, which InnoDB recovers when
    the restored server starts (as the clone itself is: its first start is a crash recovery)."""
    data = work / DATA
    sock = str(work / "s.sock")
    if len(sock) >= 100:  # a unix socket path holds 108 bytes at most
        sock = str(Path(tempfile.gettempdir()) / f"pitr-clone-{os.getpid()}.sock")
    argv = [server.tool("server"), "--no-defaults", f"--user={owner_of(data)}",
            f"--datadir={data}", f"--socket={sock}", f"--pid-file={work / 'copy.pid'}",
            f"--log-error={work / 'copy.log'}", "--skip-networking", "--skip-log-bin",
            "--skip-replica-start", "--loose-mysqlx=OFF", "--innodb-buffer-pool-size=64M",
            f"--server-id={int(server.variables('server_id')['server_id'] or 1)}",
            *QUICK_START]  # fmt: skip
    child = proc.detach(argv, work / "copy.out")
    plain = replace(server.settings, start_command=None, stop_command=None, datadir=str(data))
    copy = MyServer(plain, datadir=data, socket=sock)
    try:
        wait_for(lambda: _up(child, copy, work), 300, f"a server on the clone in {data}",
                 longest=0.05)  # fmt: skip
        rows = copy.query("SELECT BINLOG_FILE, BINLOG_POSITION, GTID_EXECUTED "
                          "FROM performance_schema.clone_status")  # fmt: skip
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        wait_for(lambda: child.poll() is not None and not alive(child.pid), 600,
                 f"the server on the clone in {data} to stop", longest=0.05)  # fmt: skip
    if not rows or not rows[0][0]:
        raise ToolFailed(f"the clone in {data} has no binlog position in "
                         "performance_schema.clone_status (binary log off?)")  # fmt: skip
    file, position, gtids = rows[0]
    return BinlogPosition(Path(str(file)).name, int(position),
                          str(gtids or "").replace("\n", ""))  # fmt: skip


def _up(child: subprocess.Popen[bytes], copy: MyServer, work: Path) -> bool:
    if child.poll() is not None:
        tail = (work / "copy.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise ToolFailed(f"the server on the clone exited {child.returncode}: {' | '.join(tail)}")
    return copy.accepts_connections()


def ship_copy(storage: Storage, key: str, work: Path, compression: Compression) -> StoredObject:
    """The copy's data directory as a tar stream into ``key``, then the copy is deleted."""
    data = work / DATA
    for name in NOT_BACKED_UP:
        with contextlib.suppress(FileNotFoundError):
            (data / name).unlink()
    return proc.upload_output(["tar", "-C", str(data), "-cf", "-", "."], storage, key, compression)


def remove_copy(work: Path) -> None:
    try:
        shutil.rmtree(work)
    except OSError as exc:
        log.warning("could not remove the clone in %s: %s", work, exc)


def clone_backup(
    server: MyServer, storage: Storage, key: str, spool_dir: str, backup_id: str,
    compression: Compression,
) -> tuple[StoredObject, BinlogPosition]:  # fmt: skip
    """Clone, find the copy's position, stream it; nothing of the copy is left."""
    require_clone_plugin(server)
    began = time.monotonic()
    work = make_copy(server, spool_dir, backup_id)
    try:
        cloned = time.monotonic()
        position = copy_position(server, work)
        started = time.monotonic()
        stored = ship_copy(storage, key, work, compression)
        log.info("clone %.1f s, its position read in %.1f s, streamed in %.1f s",
                 cloned - began, started - cloned, time.monotonic() - started)  # fmt: skip
        return stored, position
    finally:
        remove_copy(work)
