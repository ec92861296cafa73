"""Group a binlog's events into transactions and summarise the file (:func:`index_binlog`)."""

from __future__ import annotations

import gc
import os
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

from pitr.domain.gtid import MariaGtid, MariaGtidPosition, MysqlGtidSet
from pitr.engines.mysql.binlog import consts as c
from pitr.engines.mysql.binlog import events as ev
from pitr.engines.mysql.binlog.model import (
    BinlogIndex,
    TableRows,
    Transaction,
    utc_from_micros,
    utc_from_seconds,
)
from pitr.engines.mysql.binlog.payload import payload_events
from pitr.engines.mysql.binlog.reader import (
    MAX_IN_MEMORY,
    EventStream,
    FormatDescription,
    RawEvent,
    Readable,
    TornTail,
)
from pitr.engines.mysql.binlog.rows import TableMap, count_rows, table_id_len, table_map
from pitr.errors import FormatError, UsageError

SUMMARY_LIMIT = 200
_DML = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "CALL", "SELECT", "WITH", "DO"})
_LEADING_COMMENTS = re.compile(r"^(?:\s+|/\*.*?\*/|#[^\n]*\n|--[^\n]*\n)+", re.S)
_CACHE_LIMIT = 4096  # entries of each memo below, which are cleared when full
_MARIA_GTID_AT = ev.MARIA_GTID.unpack_from
_XID_AT = struct.Struct("<Q").unpack_from


def _first_words(text: str) -> tuple[str, str]:
    words = _LEADING_COMMENTS.sub("", text, count=1).split(None, 2)
    return (words[0].upper() if words else "", words[1].upper() if len(words) > 1 else "")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 1] + "…"


class _Open:
    """The transaction being assembled (class attributes are the defaults)."""

    gtid: str | None = None
    maria_key: tuple[int, int, int] | None = None
    mysql_key: tuple[str, str, int] | None = None
    standalone = False  # ends with its first statement
    began = False
    commit_us: int | None = None
    us: int | None = None
    xid: int | None = None
    kind: str | None = None
    statements: list[str] | None = None
    rows: dict[tuple[str, str], int | None] | None = None

    def __init__(self, start: int, ts: int, server_id: int) -> None:
        self.start = start
        self.ts = ts
        self.server_id = server_id


Handler = Callable[[RawEvent], None]


class _Indexer:
    def __init__(self, name: str, fde: FormatDescription, limit: int) -> None:
        self.name = name
        self.fde = fde
        self.limit = limit
        self.mariadb = fde.flavor == "mariadb"
        self.query_post = fde.post_header_len(c.QUERY, 13)
        self.tmap_post = fde.post_header_len(c.TABLE_MAP, 8)
        # per row event type: (operation, MariaDB-compressed, v2, post-header length, table id
        # length, UPDATE, PARTIAL_UPDATE), worked out once rather than per event
        self.row_kinds: dict[int, tuple[str, bool, bool, int, int, bool, bool]] = {}
        for code, (op, compressed, v2) in c.ROW_EVENTS.items():
            post = fde.post_header_len(code, 10 if v2 else 8)
            update, partial = op == "UPDATE", code == c.PARTIAL_UPDATE_ROWS
            self.row_kinds[code] = (op, compressed, v2, post, table_id_len(post), update, partial)
        self.tables: dict[int, TableMap] = {}
        self.cur: _Open | None = None
        self.txns: list[Transaction] = []
        self.maria_before: MariaGtidPosition | None = None
        self.mysql_before: MysqlGtidSet | None = None
        # (transaction end, GTID) of each complete transaction
        self.maria_done: list[tuple[int, tuple[int, int, int]]] = []
        self.mysql_done: list[tuple[int, tuple[str, str, int]]] = []
        self.next_file: str | None = None
        self.stopped = False
        # memos: a server repeats the same table maps, row counts and second timestamps
        self._maps: dict[bytes, TableMap] = {}
        self._tables: dict[tuple[object, ...], tuple[tuple[TableRows, ...], str]] = {}
        self._last_second: tuple[int, datetime] = (-1, utc_from_seconds(0))
        self.handlers: dict[int, Handler] = {
            **dict.fromkeys(c.MARIADB_ONLY, self._mariadb_event),
            **dict.fromkeys(c.ROW_EVENTS, self._rows),
            c.TABLE_MAP: self._table_map,
            c.XID: self._xid,
            c.QUERY: self._query,
            c.QUERY_COMPRESSED: self._query,
            c.MARIA_GTID: self._maria_gtid,
            c.GTID: self._mysql_gtid,
            c.ANONYMOUS_GTID: self._mysql_gtid,
            c.GTID_TAGGED: self._mysql_gtid,
            c.XA_PREPARE: self._xa_prepare,
            c.MARIA_GTID_LIST: self._gtid_list,
            c.PREVIOUS_GTIDS: self._previous_gtids,
            c.ROTATE: self._rotate,
            c.STOP: self._stop,
            c.TRANSACTION_PAYLOAD: self._payload,
            c.START_ENCRYPTION: self._encrypted,
        }

    def wanted(self) -> list[int]:
        """The event types worth reading: those with a handler, less those whose handler would
        only learn that the file is MariaDB's when its format description said so already (a
        MariaDB server writes an ANNOTATE_ROWS before each row event)."""
        noop = self._mariadb_event if self.mariadb else None
        return [code for code, handler in self.handlers.items() if handler != noop]

    def malformed(self, event: RawEvent) -> FormatError:
        name = c.event_name(event[2])
        return FormatError(f"{self.name}: malformed {name} event at offset {event[0]}")

    # --- transactions --------------------------------------------------------------------------

    def _begin(self, offset: int, ts: int, server_id: int) -> _Open:
        self.cur = _Open(offset, ts, server_id)  # an unfinished group before it is dropped
        return self.cur

    def _finish(self, end: int, end_ts: int) -> None:
        cur = self.cur
        assert cur is not None
        self.cur = None
        tables: tuple[TableRows, ...] = ()
        summary = ""
        statements = cur.statements
        if cur.rows:
            key = tuple(cur.rows.items())
            memo = self._tables.get(key)
            if memo is None:
                if len(self._tables) > _CACHE_LIMIT:
                    self._tables.clear()
                tables = tuple(TableRows(op, table, n) for (op, table), n in key)
                memo = self._tables[key] = (tables, "; ".join(str(t) for t in tables))
            tables, summary = memo
        kind = cur.kind
        if kind is None:  # DDL wins: CREATE TABLE ... SELECT logs a statement and rows
            if statements and any(_first_words(q)[0] not in _DML for q in statements):
                kind = "ddl"
            else:
                kind = "dml" if tables or statements else "other"
        if statements:
            more = len(statements) - 1
            first = _one_line(statements[0]) + (f" (+{more} more)" if more else "")
            summary = f"{first}; {summary}" if summary else first
        maria_time = cur.gtid is not None and self.mariadb  # the GTID event's time
        if cur.commit_us is not None:
            when = utc_from_micros(cur.commit_us)
        elif maria_time and cur.us is not None:
            when = utc_from_micros(cur.us)
        else:  # a whole second: most transactions share theirs with the one before
            second = cur.ts if maria_time else end_ts
            last, when = self._last_second
            if second != last:
                when = utc_from_seconds(second)
                self._last_second = (second, when)
        self.txns.append(
            Transaction(
                cur.gtid, cur.xid, when, cur.start, end, kind, summary, tables, cur.server_id
            )
        )
        if cur.maria_key is not None:
            self.maria_done.append((end, cur.maria_key))
        elif cur.mysql_key is not None:
            self.mysql_done.append((end, cur.mysql_key))

    def gtids_before(self) -> str | None:
        before = self.maria_before if self.mariadb else self.mysql_before
        return None if before is None else str(before)

    def gtids_after(self, valid_end: int) -> str | None:
        """The starting GTID state plus the GTIDs of transactions complete by ``valid_end``."""
        if self.mariadb:
            last: dict[int, tuple[int, int, int]] = {}
            for end, key in self.maria_done:
                if end <= valid_end:
                    last[key[0]] = key
            if self.maria_before is None and not last:
                return None
            pos = self.maria_before or MariaGtidPosition()
            for domain, server, seq in last.values():
                pos = pos.advance(MariaGtid(domain, server, seq))
            return str(pos)
        added: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for end, (uuid, tag, gno) in self.mysql_done:
            if end <= valid_end:
                added.setdefault((uuid, tag), []).append((gno, gno))
        if self.mysql_before is None and not added:
            return None
        return str((self.mysql_before or MysqlGtidSet()) | MysqlGtidSet.from_mapping(added))

    # --- handlers (each gets the RawEvent tuple) -----------------------------------------------

    def _maria_gtid(self, event: RawEvent) -> None:
        offset, ts, _code, server_id, _size, _flags, head, _large = event
        seq, domain, flags = _MARIA_GTID_AT(head)
        cur = self.cur = _Open(offset, ts, server_id)  # as _begin (one call fewer: hot)
        cur.gtid = f"{domain}-{server_id}-{seq}"
        cur.maria_key = (domain, server_id, seq)
        if flags & ev.FL_STANDALONE:
            cur.standalone = True
        else:
            cur.began = True
        self.mariadb = True

    def _mysql_gtid(self, event: RawEvent) -> None:
        offset, ts, code, server_id, _size, _flags, head, _large = event
        g = ev.mysql_gtid_tagged(head) if code == c.GTID_TAGGED else ev.mysql_gtid(head)
        cur = self._begin(offset, ts, server_id)
        cur.commit_us = g.commit_us
        if g.gno > 0:
            tag = f"{g.tag}:" if g.tag else ""
            cur.gtid = f"{g.uuid}:{tag}{g.gno}"
            cur.mysql_key = (g.uuid, g.tag, g.gno)

    def _query(self, event: RawEvent) -> None:
        offset, ts, code, server_id, size, _flags, head, _large = event
        q = ev.query(head, self.query_post, code == c.QUERY_COMPRESSED)
        word, second = _first_words(q.text)
        end = offset + size
        cur = self.cur
        if cur is None:
            if word in ("COMMIT", "ROLLBACK"):
                return
            cur = self._begin(offset, ts, server_id)
            if word == "BEGIN" or (word == "XA" and second == "START"):
                cur.began = True
                return
            cur.standalone = True
        elif self.mariadb and cur.us is None and q.hrnow_us is not None and ts == cur.ts:
            cur.us = ts * 1_000_000 + q.hrnow_us
        if q.xid is not None:
            cur.xid = q.xid
        if word == "BEGIN" or (word == "XA" and second in ("START", "END")):
            cur.began = True
            return
        if word == "COMMIT" or (word == "ROLLBACK" and second in ("", "WORK")):
            self._finish(end, ts)
            return
        if word in ("SAVEPOINT", "ROLLBACK", "RELEASE"):
            return
        if cur.statements is None:
            cur.statements = []
        cur.statements.append(q.text)
        if word == "XA" and second in ("COMMIT", "ROLLBACK"):
            cur.kind = "xa-" + second.lower()
            self._finish(end, ts)
        elif cur.standalone or not cur.began:
            self._finish(end, ts)

    def _xid(self, event: RawEvent) -> None:
        cur = self.cur
        if cur is not None:
            cur.xid = _XID_AT(event[6])[0]  # ev.xid, inlined (hot)
            self._finish(event[0] + event[4], event[1])

    def _xa_prepare(self, event: RawEvent) -> None:
        if self.cur is not None:
            self.cur.kind = "xa-prepare"
            self._finish(event[0] + event[4], event[1])

    def _table_map(self, event: RawEvent) -> None:
        raw = bytes(event[6])
        tmap = self._maps.get(raw)
        if tmap is None:
            tmap = table_map(raw, self.tmap_post)
            if len(self._maps) > _CACHE_LIMIT:
                self._maps.clear()
            self._maps[raw] = tmap
        self.tables[tmap.table_id] = tmap

    def _rows(self, event: RawEvent) -> None:
        cur = self.cur
        if cur is None:
            return
        head = event[6]
        op, compressed, v2, post, id_len, update, partial = self.row_kinds[event[2]]
        tmap = self.tables.get(int.from_bytes(head[:id_len], "little"))  # rows.table_id_at
        if tmap is None:
            raise ev.Malformed("rows event for a table id without a table map")
        n: int | None = None
        if event[7] is None:  # not a LargeBody
            n = count_rows(head, post, v2, update, compressed, partial, tmap, self.limit)
        key = (op, tmap.name)
        rows = cur.rows
        if rows is None:
            cur.rows = {key: n}
        elif key in rows:
            prev = rows[key]
            rows[key] = None if prev is None or n is None else prev + n
        else:
            rows[key] = n

    def _gtid_list(self, event: RawEvent) -> None:
        self.mariadb = True
        if self.maria_before is None:
            entries = ev.maria_gtid_list(event[6])
            self.maria_before = MariaGtidPosition.from_state(MariaGtid(*e) for e in entries)

    def _previous_gtids(self, event: RawEvent) -> None:
        if self.mysql_before is None:
            self.mysql_before = MysqlGtidSet.from_mapping(ev.previous_gtids(event[6]))

    def _rotate(self, event: RawEvent) -> None:
        self.next_file = ev.rotate(event[6])[1]

    def _stop(self, event: RawEvent) -> None:
        self.stopped = True

    def _mariadb_event(self, event: RawEvent) -> None:
        self.mariadb = True

    def _encrypted(self, event: RawEvent) -> None:
        raise FormatError(f"{self.name}: encrypted binlog (not supported) at offset {event[0]}")

    def _payload(self, event: RawEvent) -> None:
        offset, size, head, large = event[0], event[4], event[6], event[7]
        handlers = self.handlers
        for inner in payload_events(head, large, self.name, offset, self.limit, handlers):
            code = inner[2]
            if code == c.TRANSACTION_PAYLOAD:
                raise ev.Malformed("transaction payload inside a transaction payload")
            # inner events end where their payload event ends
            handlers[code]((offset, inner[1], code, inner[3], size, inner[5], inner[6], inner[7]))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (process-wide) meanwhile, if it is running.

    Indexing keeps a few container objects per transaction until it returns, and the
    collector's full passes, triggered by their growing number, traverse all of them again
    and again to free none (over a tenth of the time on a binlog of small transactions).
    Cycles made meanwhile (here or in other threads) are collected once it runs again.
    """
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


@_collector_paused()
def index_binlog(
    fileobj: Readable | BinaryIO, name: str, *, max_in_memory: int = MAX_IN_MEMORY
) -> BinlogIndex:
    """Index one binlog read sequentially from ``fileobj`` (see the package docstring).

    Events larger than ``max_in_memory`` bytes stream past without being held; the rows of
    such row events are counted as unknown.
    """
    stream = EventStream(fileobj, name, max_in_memory=max_in_memory)
    events = iter(stream)
    event = next(events)  # the format description; the stream raised if there is none
    fde = stream.fde
    assert fde is not None
    ix = _Indexer(name, fde, max_in_memory)
    handlers = ix.handlers
    stream.want(ix.wanted())
    try:
        for event in events:
            handlers[event[2]](event)
    except TornTail as exc:
        if exc.stream is not stream:
            raise ix.malformed(event) from exc
        stream.torn(events)
    except (*ev.DECODE_ERRORS, UsageError) as exc:
        raise ix.malformed(event) from exc
    txns = ix.txns
    if stream.truncated:  # a torn payload may have completed a transaction it cannot hold
        txns = [t for t in txns if t.end <= stream.valid_end]
    return BinlogIndex(
        name=name,
        size=stream.bytes_read,
        flavor="mariadb" if ix.mariadb else "mysql",
        server_version=fde.server_version,
        server_ids=tuple(stream.server_ids),
        checksum="crc32" if fde.checksum else "none",
        first_time=utc_from_seconds(stream.first_ts) if stream.first_ts else None,
        last_time=utc_from_seconds(stream.last_ts) if stream.last_ts else None,
        gtids_before=ix.gtids_before(),
        gtids_after=ix.gtids_after(stream.valid_end),
        in_use=fde.in_use,
        truncated=stream.truncated,
        valid_end=stream.valid_end,
        next_file=ix.next_file,
        stopped=ix.stopped,
        event_count=stream.event_count,
        transactions=tuple(txns),
    )


def index_binlog_file(
    path: str | os.PathLike[str], *, max_in_memory: int = MAX_IN_MEMORY
) -> BinlogIndex:
    """:func:`index_binlog` on a file, named by its base name."""
    with open(path, "rb") as f:
        return index_binlog(f, os.path.basename(os.fspath(path)), max_in_memory=max_in_memory)
