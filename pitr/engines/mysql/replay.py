"""Replaying binlogs into a restored server, and proving where it ended.

The restored server first gets the backup's GTID state (MariaDB ``gtid_binlog_state``, MySQL
``gtid_purged``), so that it continues the same GTID sequence and ``gtid_strict_mode`` accepts
what follows. Then every binlog of the plan is applied in order, from the backup's position in
the first to the stop position (a transaction boundary from pitr's index) in the last, in ONE
session: temporary tables and transactions that span a rotation survive. A server pitr started
itself (restore beside) applies them with its replication applier: MariaDB's SQL thread
(pitr.engines.mysql.relay, several times faster), MySQL's multi-threaded applier
(pitr.engines.mysql.applier); the instance's own server (recover in place: its
``log_slave_updates`` is its configuration's, and read-only) reads ``mariadb-binlog``'s
(``mysqlbinlog``'s) output into one client session. Success is not the tools' exit status
alone: the server's GTID position must then equal the one the index says the stop position has.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pitr.catalog.model import LogSegment, Transaction
from pitr.catalog.store import CatalogStore
from pitr.domain.gtid import MariaGtid, MariaGtidPosition, MysqlGtid, MysqlGtidSet
from pitr.domain.positions import offset_of
from pitr.engines import proc
from pitr.engines.mysql import applier
from pitr.engines.mysql.relay import (
    relay_replay,
    server_options,
    thread_states,
    undoing,
    waiting_for_space,
    watching,
)
from pitr.engines.mysql.server import MyServer, wait_for
from pitr.engines.space import NO_SPACE, nearly_full
from pitr.errors import PitrError, ToolFailed
from pitr.planner.binlog import key_in
from pitr.planner.plan import Plan

log = logging.getLogger("pitr.mysql")
SERVER_LOG = "pitr-server.log"
PID_FILE = "pitr-server.pid"
MAX_PACKET = 1 << 30
#: global settings while binlogs are replayed (the previous values come back afterwards)
REPLAY_SETTINGS = {"max_allowed_packet": MAX_PACKET, "innodb_flush_log_at_trx_commit": 0,
                   "sync_binlog": 0}  # fmt: skip
INNODB_KEEP = ("innodb_page_size", "innodb_data_file_path", "innodb_undo_tablespaces",
               "innodb_checksum_algorithm")  # fmt: skip
FRESH_EVENTS = 16  # a binlog with fewer events, none a transaction's, is a fresh one
WATCH = 1.0  # seconds between two looks at the server a client replays into
REDO_LOG = 256 << 20  # replay writes a lot: fewer checkpoints than with the default 96 MiB


@dataclass(frozen=True)
class Expected:
    """The GTID state replay starts from (at the backup's position) and must end with, and
    the last transaction applied."""

    gtids: str | None
    last: Transaction | None
    start_gtids: str | None = None


def expected_end(store: CatalogStore, plan: Plan) -> Expected:
    """The GTID states at the backup's position and at the plan's stop position, from the
    index documents.

    The backup's own record is not used for the start: mariadb-backup writes
    ``gtid_current_pos``, which also holds what a former replica applied (``gtid_slave_pos``)
    and never wrote to its binlog; continuing from it would make the restored binlog claim
    those domains. The binlog at the backup's position says what its GTID state was."""
    segments = plan.segments
    stop = plan.stop
    backup = plan.differential or plan.full
    assert stop is not None and segments and backup is not None
    mariadb = plan.datastore == "mariadb"
    start, _ = _state_in(store, segments[0], backup.end_key, mariadb)
    last_seg = segments[-1]
    limit = last_seg.end_key if stop.at_end or stop.key is None else stop.key
    state, last = _state_in(store, last_seg, limit, mariadb)
    return Expected(state, last or _last_before(store, plan), start or backup.gtid_state)


def _state_in(
    store: CatalogStore, segment: LogSegment, limit: int, mariadb: bool
) -> tuple[str | None, Transaction | None]:
    """The GTID state after ``segment``'s transactions that end at or before ``limit`` (a
    key), and the last of them."""
    state, last = segment.gtids_before, None
    for tx in store.transactions([segment])[segment.ref]:
        if tx.end is None or key_in(segment, int(tx.end.rsplit(":", 1)[1])) > limit:
            break
        last = tx
        if tx.gtid is not None and state is not None:
            if mariadb:
                state = str(MariaGtidPosition.parse(state).advance(MariaGtid.parse(tx.gtid)))
            else:
                state = str(MysqlGtidSet.parse(state).add(MysqlGtid.parse(tx.gtid)))
    return state, last


def _last_before(store: CatalogStore, plan: Plan) -> Transaction | None:
    """The last transaction replayed when none of the last binlog is: the newest of an
    earlier one after the backup's position (None when replay applies nothing)."""
    backup = plan.differential or plan.full
    assert backup is not None
    segments = plan.segments
    for i in range(len(segments) - 2, -1, -1):
        txs = store.transactions([segments[i]])[segments[i].ref]
        if i == 0:
            txs = tuple(t for t in txs if offset_of(t.key) >= offset_of(backup.end_key))
        if txs:
            return txs[-1]
    return None


def same_gtids(flavor: str, a: str, b: str) -> bool:
    if flavor == "mariadb":
        return MariaGtidPosition.parse(a) == MariaGtidPosition.parse(b)
    return MysqlGtidSet.parse(a) == MysqlGtidSet.parse(b)


def set_gtid_state(server: MyServer, state: str | None) -> None:
    """Make the restored server's binlog continue from the backup's GTID state."""
    if not state:
        return
    if server.flavor == "mariadb":
        _reset_fresh_binlog(server)
        server.query("SET GLOBAL gtid_binlog_state = %s", state)
    else:  # MySQL 8.4+ and 9.x (RESET MASTER is 8.0's name for it, removed since)
        try:
            server.query("RESET BINARY LOGS AND GTIDS")
        except ToolFailed:
            server.query("RESET MASTER")
        server.query("SET GLOBAL gtid_purged = %s", state)


def _reset_fresh_binlog(server: MyServer) -> None:
    """MariaDB: ``RESET MASTER`` on the restored server's own fresh binlog, which holds no
    transaction yet but may start with a GTID state it did not write (a ``.state`` file left
    in the directory by an earlier server), so that setting the backup's state cannot fail.
    A binlog holding any transaction is never reset: setting the state then fails, loudly."""
    for name, _size in server.binary_logs():
        events = server.query(f"SHOW BINLOG EVENTS IN %s LIMIT {FRESH_EVENTS}", name)
        if len(events) >= FRESH_EVENTS or any(str(e[2]) == "Gtid" for e in events):
            return
    server.query("RESET MASTER")


def replay(server: MyServer, files: Sequence[Path], start: int, stop: int | None) -> None:
    """mariadb-binlog FILES... | mariadb, one client session for every file."""
    if not files:
        return
    binlog = [server.tool("binlog"), "--no-defaults", f"--start-position={start}"]
    if stop is not None:
        binlog.append(f"--stop-position={stop}")
    binlog += [str(f) for f in files]
    with server.option_file() as options:
        client = [server.tool("client"), f"--defaults-extra-file={options}", "--binary-mode",
                  "--batch", f"--max-allowed-packet={MAX_PACKET}"]  # fmt: skip
        reader = proc.start(binlog, stdout=subprocess.PIPE)
        reader_err = proc.StderrTail(reader)
        assert reader.stdout is not None
        writer = proc.start(client, stdin=reader.stdout.fileno(), stdout=subprocess.DEVNULL)
        reader.stdout.close()  # the client holds the pipe now
        writer_err = proc.StderrTail(writer)
        try:
            _until_exit(server, writer)
            writer_err.wait(Path(client[0]).name)
        except ToolFailed:
            reader.kill()
            reader.wait()
            raise
        reader_err.wait(Path(binlog[0]).name)


def _until_exit(server: MyServer, client: subprocess.Popen[bytes]) -> None:
    """Wait for ``client`` to exit, looking every ``WATCH`` seconds whether a thread of
    ``server`` waits for disk space (it would retry its write every minute, for ever): then the
    client is stopped and ToolFailed raised; the server, the instance's own, runs on."""
    while True:
        try:
            client.wait(WATCH)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            with watching(server) as cursor:
                full = waiting_for_space(thread_states(cursor))
        except PitrError:
            continue  # no look this time: the client's exit tells how replay went
        if full:
            client.kill()
            client.wait()
            raise ToolFailed(f"{server.flavor} at {server.datadir} waited for disk space, and "
                             f"replay was stopped ({NO_SPACE})")  # fmt: skip


def check_reached(server: MyServer, expected: Expected) -> str:
    """The server's GTID position must be the expected one; returns it."""
    reached = server.gtid_position()
    if expected.gtids is not None and not same_gtids(server.flavor, reached, expected.gtids):
        raise ToolFailed(
            f"replay did not reach the target: the server's GTID position is "
            f"{reached or 'empty'}, expected {expected.gtids}"
        )
    return reached


def replay_plan(
    server: MyServer,
    plan: Plan,
    files: Sequence[Path],
    expected: Expected,
    writers: frozenset[int] | None = None,
) -> str:
    """Backup GTID state, replay from the backup's position to the stop, check. ``writers``
    (MariaDB: the server ids in the binlogs, pitr.engines.mysql.relay.writers; MySQL: any, the
    applier reads them from the files) on a server pitr started: replay with its SQL thread
    (MySQL: its multi-threaded applier, pitr.engines.mysql.applier); None: ``mariadb-binlog |
    mariadb``."""
    last_backup = plan.differential or plan.full
    assert last_backup is not None and plan.stop is not None
    set_gtid_state(server, expected.start_gtids)
    stop = plan.stop
    segments: Sequence[LogSegment] = plan.segments
    start = offset_of(last_backup.end_key)
    end = None if stop.at_end or stop.key is None else offset_of(stop.key)
    if end is not None and len(segments) == 1 and end < start:
        raise ToolFailed(f"the stop {stop.position} is before the backup's position "
                         f"{last_backup.end}")  # fmt: skip
    saved = server.variables(*REPLAY_SETTINGS)
    for name, value in REPLAY_SETTINGS.items():  # replay is redone after a crash: no fsyncs
        server.query(f"SET GLOBAL {name} = {value}")
    with undoing(lambda: _set_back(server, saved), f"replay settings {sorted(saved)}"):
        log.info("replaying %d binlog(s) from %s to %s", len(files), last_backup.end,
                 stop.position or "their end")  # fmt: skip
        if writers is None or (server.flavor == "mysql" and not expected.gtids):
            replay(server, files, start, end)
        elif server.flavor == "mysql":
            applier.applier_replay(server, files, start, end, str(expected.gtids))
        else:
            relay_replay(server, files, start, end, writers)
    return check_reached(server, expected)


def _set_back(server: MyServer, saved: dict[str, str]) -> None:
    """The global settings replay changed, as they were."""
    for name, before in saved.items():
        if before.isdigit():
            server.query(f"SET GLOBAL {name} = {int(before)}")


# -- a server pitr starts itself ---------------------------------------------------------------


def owner_of(path: Path) -> str:
    """Who the restored server runs as: the data directory's owner, else pitr's own user."""
    return proc.owner_name(path) or pwd.getpwuid(os.geteuid()).pw_name


def socket_path(datadir: Path, port: int | None) -> str:
    """A unix socket for the restored server (108 bytes at most: else under /tmp)."""
    inside = str(datadir / "mysqld.sock")
    if len(inside) < 100:
        return inside
    return str(Path(tempfile.gettempdir()) / f"pitr-mysqld-{port or os.getpid()}.sock")


def innodb_options(datadir: Path) -> list[str]:
    """The InnoDB layout the backup was taken with (``backup-my.cnf``)."""
    cnf = datadir / "backup-my.cnf"
    found = []
    if cnf.is_file():
        for line in cnf.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in INNODB_KEEP:
                found.append(f"--{key.strip().replace('_', '-')}={value.strip()}")
    return found


def _pool() -> int:
    """Buffer pool of a restored server: 1/16 of the memory, 128 MiB to 1 GiB."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(128 << 20, min(1 << 30, memory // 16))


def start_own(base: MyServer, datadir: Path, port: int | None, server_id: int) -> MyServer:
    """Start a server on the restored ``datadir`` (its own binlog inside it, listening on
    127.0.0.1:``port``, or no TCP at all), detached; wait until it accepts connections."""
    sock = socket_path(datadir, port)
    argv = [base.tool("server"), "--no-defaults", f"--user={owner_of(datadir)}",
            f"--datadir={datadir}", f"--socket={sock}", f"--pid-file={datadir / PID_FILE}",
            f"--log-error={datadir / SERVER_LOG}", f"--log-bin={datadir / 'mysql-bin'}",
            f"--server-id={server_id}", f"--max-allowed-packet={MAX_PACKET}",
            f"--innodb-buffer-pool-size={_pool()}", *innodb_options(datadir)]  # fmt: skip
    if base.flavor == "mariadb":
        argv += ["--binlog-format=ROW", "--skip-slave-start", f"--innodb-log-file-size={REDO_LOG}",
                 *server_options(datadir)]  # fmt: skip
    else:  # MySQL 8.4/9.x names; replaying GTID_NEXT needs GTIDs on; no X plugin port
        argv += ["--skip-replica-start", f"--innodb-redo-log-capacity={REDO_LOG}",
                 "--gtid-mode=ON", "--enforce-gtid-consistency=ON",
                 "--loose-mysqlx=OFF", *applier.server_options(datadir)]  # fmt: skip
    argv += [f"--port={port}", "--bind-address=127.0.0.1"] if port else ["--skip-networking"]
    child = proc.detach(argv, datadir / SERVER_LOG)
    plain = replace(
        base.settings, start_command=None, stop_command=None, binlog_dir=None, datadir=str(datadir)
    )  # never the instance's service commands
    server = MyServer(plain, datadir=datadir, socket=sock, port=port)

    def up() -> bool:
        if child.poll() is not None:
            raise ToolFailed(f"the restored server exited {child.returncode} while starting: "
                             f"{_why_not_started(datadir / SERVER_LOG, datadir)}")  # fmt: skip
        return server.accepts_connections()

    wait_for(up, 300, f"the restored server in {datadir}")
    log.info("restored server running in %s (socket %s, port %s)", datadir, sock, port or "-")
    return server


def _why_not_started(log_path: Path, datadir: Path, lines: int = 3) -> str:
    """The last ``lines`` of the server's log, and `` (No space left on device)`` when it ran
    out of space: its log says so (InnoDB says "failed with error 28" or "Errcode: 28"; the
    last lines often do not), or ``datadir``'s file system has no room for the redo log the
    server creates first. A full disk can leave the log empty, and the server frees what it
    had allocated on its way out: how much is free afterwards is no sign that there was room."""
    try:
        text = log_path.read_text(errors="replace")
        tail = " | ".join(text.strip().splitlines()[-lines:]) or "its log is empty"
    except OSError:
        text, tail = "", "no log"
    said = re.search(r"\berror (?:number )?28\b|Errcode: 28\b", text) or NO_SPACE in text
    return f"{tail} ({NO_SPACE})" if said or nearly_full(datadir, below=REDO_LOG) else tail
