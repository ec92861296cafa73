"""Replaying archived binlogs with a restored MySQL server's own multi-threaded applier.

The binlogs become the relay logs of a replication channel named ``pitr`` (moved into place
with their relay log index, as for MariaDB: pitr.engines.mysql.relay), ``CHANGE REPLICATION
SOURCE TO`` an address never connected to, at ``RELAY_LOG_FILE``/``RELAY_LOG_POS`` = the
backup's position, and ``START REPLICA SQL_THREAD`` with ``replica_parallel_workers``
appliers. The events are applied as they are, not decoded to SQL text and parsed again, and
transactions the source could commit in parallel are applied in parallel (commit order kept).

The stop is exact without an ``UNTIL`` clause (which MySQL does not allow together with
parallel workers for a relay log position): the last binlog — pitr's own downloaded copy — is
cut at the stop position, a transaction boundary from pitr's index, so that the relay logs
hold exactly the transactions to apply. Replay is done when the server's ``gtid_executed``
holds the GTID set the index gives for the stop, or once the applier has read all the relay
logs and its workers are stopped; ``check_reached`` then proves the set is exactly that.

The applier skips events carrying its own ``server_id`` (``replicate_same_server_id`` cannot be
used with ``log_replica_updates``, which writes the applied transactions to the restored
server's binlog with their GTIDs): during replay the server runs under an id no event of the
binlogs carries (read from their event headers), and gets its own back afterwards. ``RESET
REPLICA ALL`` then removes the channel and its relay logs: no replication state is left.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pitr.engines.mysql.relay import (
    RELAY_BASE,
    give_up_when_full,
    place_relay_logs,
    read_all,
    replica_status,
    thread_states,
    undoing,
    unused_server_id,
    watching,
)
from pitr.engines.mysql.server import MyServer
from pitr.errors import ToolFailed

log = logging.getLogger("pitr.mysql")
CHANNEL = "pitr"
STATUS = f"SHOW REPLICA STATUS FOR CHANNEL '{CHANNEL}'"
WORKERS = 4  # replica_parallel_workers during replay (MySQL's default)
POLL = 0.1  # seconds: WAIT_FOR_EXECUTED_GTID_SET's timeout between looks at the applier
MAGIC = b"\xfebin"
HEADER = struct.Struct("<4xBII")  # type code, server_id, event length (of 19 header bytes)


def server_options(datadir: Path) -> list[str]:
    """Options of a MySQL server pitr starts so that it can replay through its applier."""
    return [f"--relay-log={datadir / RELAY_BASE}"]


def event_server_ids(path: Path) -> frozenset[int]:
    """The server ids in the event headers of binlog ``path`` (a walk from header to header)."""
    ids: set[int] = set()
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != MAGIC:
            raise ToolFailed(f"{path.name}: not a binlog (no magic number)")
        offset = 4
        while offset + 19 <= size:
            f.seek(offset)
            _code, server_id, length = HEADER.unpack(f.read(13))
            if length < 19:
                raise ToolFailed(f"{path.name}: an event of {length} bytes at {offset}")
            ids.add(server_id)
            offset += length
    return frozenset(ids)


def _relay_names(server: MyServer, count: int) -> tuple[list[Path], Path]:
    """MySQL's names for the ``pitr`` channel's relay logs: ``<relay_log>-pitr.NNNNNN``."""
    base, index = server.query("SELECT @@GLOBAL.relay_log_basename, @@GLOBAL.relay_log_index")[0]
    if not base or not index:
        raise ToolFailed("the restored server has no relay log configured")
    stem = str(index).removesuffix(".index")
    names = [Path(f"{base}-{CHANNEL}.{n:06d}") for n in range(1, count + 1)]
    return names, Path(f"{stem}-{CHANNEL}.index")


def _error(cursor: Any, status: dict[str, Any]) -> str | None:
    """The applier's error (the coordinator's, else a worker's), or None."""
    if status["Last_SQL_Errno"]:
        return f"error {status['Last_SQL_Errno']}: {status['Last_SQL_Error']}"
    cursor.execute("SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema."
                   "replication_applier_status_by_worker WHERE CHANNEL_NAME = %s "
                   "AND LAST_ERROR_NUMBER <> 0 LIMIT 1", (CHANNEL,))  # fmt: skip
    row = cursor.fetchone()
    return None if row is None else f"error {row[0]}: {row[1]}"


def _wait(server: MyServer, names: Sequence[Path], end: int, gtids: str) -> None:
    """Until ``gtids`` are executed, the applier has read everything, or it failed."""
    with watching(server) as cur:
        while True:
            cur.execute("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (gtids, POLL))
            reached = cur.fetchone()[0] == 0
            status = replica_status(cur, STATUS)
            state = str(status.get("Replica_SQL_Running_State") or "")
            give_up_when_full(server, thread_states(cur))  # its workers write the binlog
            where, pos = str(status["Relay_Log_File"]), int(status["Relay_Log_Pos"])
            if (
                reached
                or status["Replica_SQL_Running"] != "Yes"
                or read_all(state, where, pos, names, end)
            ):
                cur.execute(f"STOP REPLICA SQL_THREAD FOR CHANNEL '{CHANNEL}'")
                failed = _error(cur, replica_status(cur, STATUS))
                if failed and not reached:
                    raise ToolFailed(f"replay stopped: {failed}")
                return


def applier_replay(
    server: MyServer, files: Sequence[Path], start: int, stop: int | None, gtids: str
) -> None:
    """Apply ``files`` from byte ``start`` of the first to byte ``stop`` of the last (None:
    to their end) with the applier, until ``gtids`` (the set at the stop) are executed; the
    server's replication state is as before after. ``files`` are consumed."""
    if not files:
        return
    if stop is not None:
        os.truncate(files[-1], stop)
    taken: set[int] = set()
    for path in files:
        taken |= event_server_ids(path)
    names, index = _relay_names(server, len(files))
    own = int(server.query("SELECT @@GLOBAL.server_id")[0][0])
    end = place_relay_logs(files, names, index)
    server.query(f"SET GLOBAL server_id = {unused_server_id(frozenset(taken | {own}))}")
    server.query(f"SET GLOBAL replica_parallel_workers = {WORKERS}")
    connected = False
    with undoing(lambda: _forget(server, own, connected, [*names, index]), "replication"):
        server.query(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = 1, "
            f"RELAY_LOG_FILE = '{names[0]}', RELAY_LOG_POS = {start} FOR CHANNEL '{CHANNEL}'"
        )
        connected = True
        began = time.monotonic()
        server.query(f"START REPLICA SQL_THREAD FOR CHANNEL '{CHANNEL}'")
        _wait(server, names, end, gtids)
        log.info("applier replay took %.1f s", time.monotonic() - began)


def _forget(server: MyServer, own: int, connected: bool, placed: list[Path]) -> None:
    """No replication state left: the channel and its relay logs; the server's own id back."""
    try:
        if connected:
            server.query(f"STOP REPLICA FOR CHANNEL '{CHANNEL}'")
            server.query(f"RESET REPLICA ALL FOR CHANNEL '{CHANNEL}'")
        else:
            for path in placed:
                path.unlink(missing_ok=True)
    finally:
        server.query(f"SET GLOBAL server_id = {own}")
