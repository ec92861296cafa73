"""Replaying archived binlogs with the restored server's own replication SQL thread.

The binlogs are moved into the data directory as the relay logs of a replication connection
named ``pitr`` (with their relay log index), ``CHANGE MASTER 'pitr' TO`` an address never
connected to, at ``RELAY_LOG_FILE``/``RELAY_LOG_POS`` = the backup's position, and ``START SLAVE
'pitr' SQL_THREAD UNTIL RELAY_LOG_FILE/RELAY_LOG_POS`` = the stop position (a transaction
boundary from pitr's index; MariaDB checks the condition before each event and never inside a
transaction). The events are applied as they are, not decoded to SQL text and parsed again:
several times faster than ``mariadb-binlog | mariadb``. One SQL thread runs them all, in order,
so temporary tables and session state carry across rotations as in one client session.

What this needs of the server, and what it leaves behind:

* ``log_slave_updates``, so that the applied transactions are written to the server's own
  binlog with their original GTIDs and server ids (the GTID check after replay reads the
  binlog's position). It is read-only: only a server pitr starts itself has it (restore beside).
* the SQL thread skips events carrying its own ``server_id``, and ``replicate_same_server_id``
  cannot be used with ``log_slave_updates``: during replay the server runs under a server id no
  transaction of the replayed binlogs carries, and gets its own back afterwards.
* one SQL thread, no parallel apply: MariaDB 10.11 crashes with ``UNTIL RELAY_LOG_POS`` and
  ``slave_parallel_threads`` > 0 (measured here).
* afterwards ``RESET SLAVE 'pitr' ALL`` removes the connection, its info files and the relay
  logs, and ``gtid_slave_pos`` (which the SQL thread advances) is set back to what it was.

Every replay (MySQL's applier, the client pipeline) shares from here how it watches the server
(a thread waiting for disk space would wait for ever) and undoes what it changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pitr.catalog.store import CatalogStore
from pitr.engines.mysql.server import MyServer
from pitr.engines.space import NO_SPACE
from pitr.errors import PitrError, ToolFailed
from pitr.planner.plan import Plan

log = logging.getLogger("pitr.mysql")
#: a thread's state while the server waits for a full disk (MariaDB's, MySQL's): a binlog write
#: there is retried every minute, for ever, rather than failed
NO_ROOM = ("Waiting for someone to free space", "Waiting for disk space")
CONNECTION = "pitr"
RELAY_BASE = "pitr-relay"  # --relay-log of a server pitr starts: <datadir>/pitr-relay
MAX_SERVER_ID = (1 << 32) - 1
POLL = 0.05  # seconds between looks at the SQL thread
STATUS = f"SHOW SLAVE '{CONNECTION}' STATUS"
WAITING = ("Slave has read all relay log", "Replica has read all relay log")


def server_options(datadir: Path) -> list[str]:
    """Options of a server pitr starts so that it can replay through its SQL thread."""
    return ["--log-slave-updates", f"--relay-log={datadir / RELAY_BASE}"]


class OutOfSpace(ToolFailed):
    """The restored server waited for disk space during replay, and pitr killed it."""


def thread_states(cursor: Any) -> list[str]:
    """What each thread of the server is doing (SHOW PROCESSLIST's State)."""
    cursor.execute("SHOW PROCESSLIST")
    column = [d[0] for d in cursor.description].index("State")
    return [str(row[column] or "") for row in cursor.fetchall()]


def waiting_for_space(states: Iterable[str]) -> bool:
    return any(state.startswith(NO_ROOM) for state in states)


def give_up_when_full(server: MyServer, states: Iterable[str]) -> None:
    """Kill ``server`` (pitr's own, its directory thrown away) and raise OutOfSpace when one
    of its threads is in one of ``states`` waiting for disk space: replay would never end."""
    if waiting_for_space(states):
        server.kill()
        raise OutOfSpace(f"the restored server waited for disk space in {server.datadir} and "
                         f"was stopped ({NO_SPACE})")  # fmt: skip


@contextlib.contextmanager
def undoing(undo: Callable[[], None], what: str) -> Iterator[None]:
    """Run ``undo`` after the block however it ends, but not after OutOfSpace (the server is
    gone, nothing is left to undo in it). When the block failed, its error is the one raised:
    an ``undo`` failing too (a server that died answers nothing) is only logged."""
    try:
        yield
    except OutOfSpace:
        raise
    except BaseException:
        try:
            undo()
        except PitrError as also:
            log.warning("%s not undone: %s", what, also.message)
        raise
    undo()


def writers(store: CatalogStore, plan: Plan) -> frozenset[int]:
    """The server ids of the transactions in the plan's binlogs, and of their writers."""
    ids = {int(s.system) for s in plan.segments if s.system.isdigit()}
    for txs in store.transactions(plan.segments).values():
        ids.update(int(t.gtid.split("-")[1]) for t in txs if t.gtid)
    return frozenset(ids)


def unused_server_id(taken: frozenset[int]) -> int:
    candidate = MAX_SERVER_ID
    while candidate in taken:
        candidate -= 1
    return candidate


def _relay_names(server: MyServer, count: int) -> tuple[list[Path], Path]:
    """The relay log files (and index) the ``pitr`` connection reads first."""
    found = server.query("SELECT @@GLOBAL.relay_log_basename, @@GLOBAL.relay_log_index")[0]
    if not found[0] or not found[1]:
        raise ToolFailed("the restored server has no relay log configured")
    base = f"{found[0]}-{CONNECTION}"
    index = Path(f"{str(found[1]).removesuffix('.index')}-{CONNECTION}.index")
    return [Path(f"{base}.{n:06d}") for n in range(1, count + 1)], index


def place_relay_logs(files: Sequence[Path], names: Sequence[Path], index: Path) -> int:
    """Move the binlogs into place as relay logs (owned as the data directory is); the size
    of the last one, read now: once the SQL thread runs, the server may apply and delete it."""
    owner = index.parent.stat()
    for src, dst in zip(files, names, strict=True):
        shutil.move(src, dst)
        if os.geteuid() == 0:
            os.chown(dst, owner.st_uid, owner.st_gid)
    end = names[-1].stat().st_size
    index.write_text("".join(f"{n}\n" for n in names))
    if os.geteuid() == 0:
        os.chown(index, owner.st_uid, owner.st_gid)
    return end


def replica_status(
    cursor: Any, statement: str = f"SHOW SLAVE '{CONNECTION}' STATUS"
) -> dict[str, Any]:
    """The replication status row of pitr's connection (MySQL: ``statement`` for its channel)."""
    cursor.execute(statement)
    row = cursor.fetchone()
    if row is None:
        raise ToolFailed(f"replication connection '{CONNECTION}' vanished during replay")
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def read_all(state: str, where: str, pos: int, names: Sequence[Path], end: int) -> bool:
    """The SQL thread (``state``, at ``where``:``pos``) applied every event of the relay logs
    pitr placed (the last is ``end`` bytes long: measured when it was placed, before the thread
    started, which purges each relay log it is done with): it waits, in the server's own empty
    relay log or at the end of the last one placed."""
    if not state.startswith(WAITING):
        return False
    ours = {n.name for n in names} | {str(n) for n in names}
    last = names[-1]
    return where not in ours or (where in (last.name, str(last)) and pos >= end)


@contextlib.contextmanager
def watching(server: MyServer) -> Iterator[Any]:
    """A cursor on ``server`` while replay runs; its errors as ToolFailed."""
    import pymysql

    conn = server.connect()
    try:
        with conn.cursor() as cur:
            yield cur
    except pymysql.MySQLError as exc:
        raise ToolFailed(f"the restored server failed during replay: "
                         f"{exc.args[-1] if exc.args else exc}") from None  # fmt: skip
    finally:
        conn.close()


def _wait(server: MyServer, names: Sequence[Path], end: int) -> dict[str, Any]:
    """Until the SQL thread stopped (its UNTIL reached, or an error) or read everything."""
    with watching(server) as cur:
        while True:
            status = replica_status(cur)
            if status["Slave_SQL_Running"] != "Yes":
                return status
            state = str(status.get("Slave_SQL_Running_State") or "")
            give_up_when_full(server, [state])  # its one SQL thread writes the binlog
            where, pos = str(status["Relay_Log_File"]), int(status["Relay_Log_Pos"])
            if read_all(state, where, pos, names, end):
                cur.execute(f"STOP SLAVE '{CONNECTION}' SQL_THREAD")
                return replica_status(cur)
            time.sleep(POLL)


def relay_replay(
    server: MyServer, files: Sequence[Path], start: int, stop: int | None, taken: frozenset[int]
) -> None:
    """Apply ``files`` from byte ``start`` of the first to byte ``stop`` of the last (None:
    to their end) with the SQL thread; the server's replication state is as before after."""
    if not files:
        return
    names, index = _relay_names(server, len(files))
    before = server.query("SELECT @@GLOBAL.server_id, @@GLOBAL.gtid_slave_pos")[0]
    end = place_relay_logs(files, names, index)
    until = "" if stop is None else (
        f" UNTIL RELAY_LOG_FILE = '{names[-1].name}', RELAY_LOG_POS = {stop}")  # fmt: skip
    server.query(f"SET GLOBAL server_id = {unused_server_id(taken | {int(before[0])})}")
    connected = False
    with undoing(lambda: _forget(server, before, connected, [*names, index]), "replication"):
        server.query(
            f"CHANGE MASTER '{CONNECTION}' TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 1, "
            f"MASTER_USE_GTID = no, RELAY_LOG_FILE = '{names[0].name}', RELAY_LOG_POS = {start}"
        )
        connected = True
        server.query(f"START SLAVE '{CONNECTION}' SQL_THREAD{until}")
        status = _wait(server, names, end)
        if status["Last_SQL_Errno"]:
            raise ToolFailed(f"replay stopped: error {status['Last_SQL_Errno']}: "
                             f"{status['Last_SQL_Error']}")  # fmt: skip


def _forget(server: MyServer, before: tuple[Any, ...], connected: bool,
            placed: list[Path]) -> None:  # fmt: skip
    """No replication state left: connection, info files, relay logs, gtid_slave_pos."""
    try:
        if connected:
            server.query(f"STOP SLAVE '{CONNECTION}'")  # a no-op (a note) when stopped
            server.query(f"RESET SLAVE '{CONNECTION}' ALL")
        else:
            for path in placed:
                path.unlink(missing_ok=True)
    finally:
        server.query("SET GLOBAL gtid_slave_pos = %s", str(before[1] or ""))
        server.query(f"SET GLOBAL server_id = {int(before[0])}")
