"""``pitr archive --follow`` for PostgreSQL: WAL streamed through a replication slot
(docs/postgresql.md, "Streaming WAL").

pitr creates a physical replication slot named ``pitr_<instance>`` (``slot_name``) and runs
``pg_receivewal --slot`` into a spool directory, ``<spool_dir>/<instance>/wal``. Every segment
the receiver completes is published exactly as ``wal-push`` publishes it (the same segment
arriving from ``archive_command`` too is accepted once; a different one is refused), then
removed from the spool. The segment still being written (``NAME.partial``) is shipped every
``follow_interval`` seconds and when the follower stops, under ``open/`` like an open binlog
(``pitr.catalog.openlogs``): planning counts it as its timeline's last segment until the
complete one is archived, and ``wal-fetch`` serves it, so a target seconds before a lost
primary is reachable.

The slot keeps the server's WAL until the receiver has it on disk; the spool keeps it until it
is in the repository: a follower stopped or killed at any moment starts again where it was,
never losing or duplicating a segment. A slot whose follower is gone holds WAL on the server:
``status`` grades how much (``[status] slot_warn_mb``, ``slot_crit_mb``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pitr.catalog import openlogs
from pitr.catalog.model import SegmentIndex
from pitr.domain.positions import parse_wal_name
from pitr.domain.timeutil import utcnow
from pitr.engines import proc
from pitr.engines.base import Archived, SlotLag
from pitr.engines.postgresql.archive import PushContext, segment_record, wal_push
from pitr.engines.postgresql.server import PgServer
from pitr.engines.postgresql.waldump import index_segment
from pitr.engines.postgresql.walfile import check_segment, read_long_header
from pitr.errors import PitrError, PreconditionFailed, ToolFailed
from pitr.storage.transfer import Compression, upload

log = logging.getLogger("pitr.postgresql")
POLL = 0.5
GIVE_UP = 300.0  # seconds the server may stay unreachable before the follower gives up
HEARTBEAT = 5.0
PARTIAL_LEVEL = 1  # zstd level of the partial segment's copies (``_cheap``)
RECEIVER = "pitr_follow"  # the receiver's application_name (pg_stat_replication)
Beat = Callable[[dict[str, Any]], None]


def slot_name(instance: str) -> str:
    """``pitr_<instance>``, in the characters a slot name allows (at most 63)."""
    return ("pitr_" + re.sub(r"[^a-z0-9_]", "_", instance.lower()))[:63]


#: where the server's WAL ends, on a primary or a standby
CURRENT = ("CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
           "ELSE pg_current_wal_lsn() END")  # fmt: skip


def _query(server: PgServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """``server.query``, an SQL error (no privilege, say) as ``PreconditionFailed``."""
    import psycopg

    try:
        return server.query(sql, *params)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreconditionFailed(f"instance {server.settings.name}: {first}") from None


def slot_lag(server: PgServer) -> SlotLag | None:
    """The instance's slot as the server shows it; None when there is none."""
    rows = _query(
        server,
        f"SELECT active, wal_status, pg_wal_lsn_diff({CURRENT}, restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = %s",
        slot_name(server.settings.name),
    )
    if not rows:
        return None
    active, status, retained = rows[0]
    retained = None if retained is None else max(0, int(retained))
    return SlotLag(slot_name(server.settings.name), bool(active), retained, status)


def ensure_slot(server: PgServer) -> str:
    """Create the physical slot (reserving WAL from now) unless it exists; its name."""
    name = slot_name(server.settings.name)
    created = _query(
        server,
        "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
        "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
        name,
        name,
    )
    if created:
        log.info("replication slot %s created", name)
    return name


class Spool:
    """The receiver's directory: complete segments published and removed, the partial one
    shipped under ``open/`` when it grew."""

    def __init__(self, ctx: PushContext, path: Path, waldump: str) -> None:
        self.ctx, self.path, self.waldump = ctx, path, waldump
        self.pushed = self.already = 0
        self.marks: dict[str, tuple[int, int]] = {}  # partial name -> (mtime_ns, size) shipped
        self.shipped: dict[str, tuple[int, str]] = {}  # name -> (last record, object key)
        store = ctx.store
        #: (stream, name) of the open copies in the repository (an earlier run's too)
        self.present = {(d.segment.stream, d.segment.name)
                        for d in openlogs.open_indexes(store.storage, store.layout)}  # fmt: skip

    def complete(self) -> list[Path]:
        """The files the receiver finished (history files first), oldest first."""
        found = [p for p in self.path.iterdir() if p.is_file() and _is_complete(p.name)]
        return sorted(found, key=lambda p: (not p.name.endswith(".history"), p.name))

    def partial(self) -> Path | None:
        found = sorted(p for p in self.path.glob("*.partial") if _is_segment(p.name[:24]))
        return found[-1] if found else None

    def ship_complete(self) -> None:
        """Publish every finished file as ``wal-push`` does; remove it and its open copy."""
        for path in self.complete():
            if wal_push(self.ctx, path):
                self.pushed += 1
            else:
                self.already += 1
            path.unlink()
            if _is_segment(path.name):
                self._closed(path.name)

    def _closed(self, name: str) -> None:
        """Segment ``name`` is archived: its open copy (and older ones left) go."""
        store = self.ctx.store
        for stream, open_name in sorted(self.present):
            if open_name <= name and open_name[:8] == name[:8]:
                openlogs.remove(store.storage, store.layout, stream, open_name)
                self.present.discard((stream, open_name))
                self.shipped.pop(open_name, None)

    def ship_partial(self) -> None:
        """Ship the partial segment when the receiver wrote to it since last time."""
        path = self.partial()
        if path is None:
            return
        name = path.name[:24]
        stat = path.stat()
        mark = (stat.st_mtime_ns, stat.st_size)
        if self.marks.get(name) == mark:
            return
        wal = parse_wal_name(name)
        assert wal is not None
        with path.open("rb") as fh:
            head = fh.read(64)
        if not head.strip(b"\0"):
            return  # just created, zero-filled: nothing received yet
        header = read_long_header(head, name)
        check_segment(header, wal)
        now = utcnow()
        index = index_segment(self._named(path, name), name, self.waldump, fallback_time=now)
        before = self.shipped.get(name)
        end = index.records_end
        if end is None or (before is not None and before[0] == end):
            self.marks[name] = mark
            return
        store, compression = self.ctx.store, _cheap(self.ctx.compression)
        key = openlogs.object_key(store.layout, wal.stream, name, end, compression.suffix)
        # at least every record pg_waldump saw; no raw sha256: nothing compares a partial copy
        # (the stored sha256, the zstd checksum and each record's CRC check it)
        with path.open("rb") as fh:
            stored = upload(store.storage, key, fh, compression)
        record = segment_record(wal, header, stored, index, now)
        extra = {**record.extra, "partial": True, "records_end": end}
        doc = SegmentIndex(replace(record, extra=extra), index.transactions)
        openlogs.publish(store.storage, store.layout, doc, before[1] if before else None)
        self.shipped[name] = (end, key)
        self.present.add((wal.stream, name))
        self.marks[name] = mark
        log.info("partial %s shipped (%d commits)", name, len(index.transactions))

    def _named(self, path: Path, name: str) -> Path:
        """``path`` under its segment name (pg_waldump reads the position from the name)."""
        link = self.path / ".waldump" / name
        link.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(path)
        return link

    def try_ship_partial(self) -> None:
        try:
            self.ship_partial()
        except (PitrError, OSError) as exc:
            log.warning("could not ship the partial WAL segment: %s",
                        getattr(exc, "message", exc))  # fmt: skip


def _cheap(compression: Compression) -> Compression:
    """How a partial segment is shipped: zstd level 1 at most. Its copy lives until the
    segment completes (then it is compressed at the configured level); shipped every
    interval, level 1 costs about 40 % less CPU than level 3, for a larger copy."""
    return replace(compression, level=min(compression.level, PARTIAL_LEVEL))


def _is_segment(name: str) -> bool:
    wal = parse_wal_name(name)
    return wal is not None and wal.kind == "segment"


def _is_complete(name: str) -> bool:
    wal = parse_wal_name(name)
    return wal is not None and wal.kind in ("segment", "history")


class Heartbeat:
    """Every ``HEARTBEAT`` seconds, how far the receiver is behind the server (bytes it has
    not written yet) and the slot's retained WAL, handed to ``beat`` (the follower's state
    file: docs/monitoring.md)."""

    def __init__(self, server: PgServer, beat: Beat | None) -> None:
        self.server, self.beat = server, beat
        self.started = utcnow()
        self.caught_up: Any = None
        self.due = 0.0

    def __call__(self, *, stopped: bool = False) -> None:
        if self.beat is None or (not stopped and time.monotonic() < self.due):
            return
        self.due = time.monotonic() + HEARTBEAT
        behind = retained = None
        with contextlib.suppress(PitrError):  # one connection: the receiver's place, the slot's
            rows = _query(
                self.server,
                f"SELECT (SELECT pg_wal_lsn_diff({CURRENT}, write_lsn)::bigint "
                "FROM pg_stat_replication WHERE application_name = %s LIMIT 1), "
                f"(SELECT pg_wal_lsn_diff({CURRENT}, restart_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s)",
                RECEIVER,
                slot_name(self.server.settings.name),
            )
            behind, retained = (None if v is None else max(0, int(v)) for v in rows[0])
        now = utcnow()
        if behind == 0:
            self.caught_up = now
        state = {"started": self.started, "heartbeat": now, "caught_up": self.caught_up,
                 "behind_bytes": behind, "slot": slot_name(self.server.settings.name),
                 "slot_retained_bytes": retained, "stopped": now if stopped else None}  # fmt: skip
        try:
            self.beat(state)
        except OSError as exc:
            log.warning("could not write the follower's state: %s", exc.strerror)


def _receiver_env(server: PgServer) -> dict[str, str]:
    """libpq's variables for the receiver: the password never goes on its command line."""
    info = server.conninfo()
    env = {"PGUSER": str(info["user"]), "PGAPPNAME": RECEIVER, "PGCONNECT_TIMEOUT": "10"}
    if "host" in info:
        env["PGHOST"] = str(info["host"])
    if "port" in info:
        env["PGPORT"] = str(info["port"])
    if "password" in info:
        env["PGPASSWORD"] = str(info["password"])
    return env


def _start(server: PgServer, spool: Path, slot: str) -> tuple[Any, proc.StderrTail]:
    argv = [server.tool("pg_receivewal"), "--directory", str(spool), "--slot", slot,
            "--no-loop", "--no-password", "--status-interval", "5"]  # fmt: skip
    log.info("streaming WAL of instance %s through slot %s into %s",
             server.settings.name, slot, spool)  # fmt: skip
    child = proc.start(
        argv, env=_receiver_env(server), stdout=subprocess.DEVNULL, die_with_parent=True
    )
    return child, proc.StderrTail(child)


def _spool_of(spool_root: Path, instance: str) -> Path:
    spool = spool_root / instance / "wal"
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    return spool


def _wait_slot_free(server: PgServer, slot: str, seconds: float = 15.0) -> None:
    """A receiver of a follower killed just now may hold the slot a moment longer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lag = slot_lag(server)
        if lag is None or not lag.active:
            return
        time.sleep(0.2)
    raise ToolFailed(
        f"replication slot {slot} is in use by another receiver",
        hint="is another pitr archive --follow running for this instance on another host?",
    )


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT only ask the follower to stop (set the event): whatever it is doing
    then (an upload, a query) finishes, and it ships what the spool holds before it exits."""
    stopping = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stopping.set())
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def follow_wal(
    server: PgServer,
    ctx: PushContext,
    spool_root: Path,
    duration: float | None = None,
    beat: Beat | None = None,
) -> Archived:
    """Stream until SIGTERM/SIGINT (then ship what the spool holds and return normally) or
    for ``duration`` seconds; a server unreachable for ``GIVE_UP`` seconds ends it (exit 7)."""
    spool_dir = _spool_of(spool_root, server.settings.name)
    spool = Spool(ctx, spool_dir, server.tool("pg_waldump"))
    slot = ensure_slot(server)
    heartbeat = Heartbeat(server, beat)
    interval = server.settings.follow_interval
    deadline = None if duration is None else time.monotonic() + duration
    spool.ship_complete()  # what an earlier run left
    _wait_slot_free(server, slot)
    child, tail = _start(server, spool_dir, slot)
    next_partial = time.monotonic()  # then every interval, however long a shipment takes
    down_since: float | None = None
    with _stop_signals() as stopping:
        try:
            while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                spool.ship_complete()
                heartbeat()
                if interval and time.monotonic() >= next_partial:
                    spool.try_ship_partial()
                    next_partial = max(next_partial + interval, time.monotonic())
                if child.poll() is not None:
                    with contextlib.suppress(ToolFailed):
                        tail.wait("pg_receivewal")
                    if not server.accepts_connections():
                        down_since = down_since or time.monotonic()
                        if time.monotonic() - down_since > GIVE_UP:
                            raise ToolFailed(f"instance {server.settings.name} unreachable for "
                                             f"{GIVE_UP:g} s; WAL streaming stopped")  # fmt: skip
                        spool.try_ship_partial()  # the server is gone: this is all it sent
                        stopping.wait(2)
                        continue
                    down_since = None
                    _wait_slot_free(server, slot)
                    child, tail = _start(server, spool_dir, slot)
                stopping.wait(POLL)
        finally:
            proc.stop(child)  # pg_receivewal flushes what it has and exits
    stop_reason = "signal" if stopping.is_set() else "time limit"
    try:
        spool.ship_complete()
    except PitrError as exc:
        log.warning("could not ship the last complete WAL segment: %s", exc.message)
    if interval:
        spool.try_ship_partial()
    heartbeat(stopped=True)
    return Archived(spool.pushed, spool.already, stopped_by=stop_reason, spool=str(spool_dir))
