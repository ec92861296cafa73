"""Event-by-event decoding for ``pitr inspect``: :func:`iter_events`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from pitr.domain.gtid import MysqlGtidSet
from pitr.engines.mysql.binlog import consts as c
from pitr.engines.mysql.binlog import events as ev
from pitr.engines.mysql.binlog.model import Event
from pitr.engines.mysql.binlog.payload import payload_events
from pitr.engines.mysql.binlog.reader import (
    MAX_IN_MEMORY,
    EventStream,
    FormatDescription,
    LargeBody,
    RawEvent,
    TornTail,
)
from pitr.engines.mysql.binlog.rows import TableMap, count_rows, table_id_at, table_map
from pitr.errors import FormatError, UsageError


class _Decoder:
    def __init__(self, name: str, fde: FormatDescription, limit: int) -> None:
        self.name = name
        self.fde = fde
        self.limit = limit
        self.tables: dict[int, TableMap] = {}

    def fields(
        self, code: int, server_id: int, head: memoryview | bytes, large: LargeBody | None
    ) -> dict[str, Any]:
        post = self.fde.post_header_len
        if code == c.FORMAT_DESCRIPTION:
            return {
                "server_version": self.fde.server_version,
                "checksum": "crc32" if self.fde.checksum else "none",
                "in_use": self.fde.in_use,
            }
        if code == c.MARIA_GTID:
            g = ev.maria_gtid(head)
            flags = [name for bit, name in ev.MARIA_GTID_FLAGS.items() if g.flags & bit]
            gtid = f"{g.domain}-{server_id}-{g.seq}"
            return {"gtid": gtid, "flags": flags, "commit_id": g.commit_id}
        if code in (c.GTID, c.ANONYMOUS_GTID, c.GTID_TAGGED):
            m = ev.mysql_gtid_tagged(head) if code == c.GTID_TAGGED else ev.mysql_gtid(head)
            return m._asdict()
        if code == c.MARIA_GTID_LIST:
            return {"gtids": [f"{d}-{s}-{n}" for d, s, n in ev.maria_gtid_list(head)]}
        if code == c.PREVIOUS_GTIDS:
            return {"gtids": str(MysqlGtidSet.from_mapping(ev.previous_gtids(head)))}
        if code in (c.QUERY, c.QUERY_COMPRESSED):
            return ev.query(head, post(code, 13), code == c.QUERY_COMPRESSED)._asdict()
        if code == c.XID:
            return {"xid": ev.xid(head)}
        if code == c.ROTATE:
            position, name = ev.rotate(head)
            return {"position": position, "next_file": name}
        if code in (c.ANNOTATE_ROWS, c.ROWS_QUERY, c.BINLOG_CHECKPOINT):
            skip = {c.ANNOTATE_ROWS: 0, c.ROWS_QUERY: 1, c.BINLOG_CHECKPOINT: 4}[code]
            return {"text": ev.text_body(head, skip)}
        if code == c.TABLE_MAP:
            tmap = table_map(head, post(code, 8))
            self.tables[tmap.table_id] = tmap
            return {"table_id": tmap.table_id, "table": tmap.name, "columns": len(tmap.sizes)}
        if code in c.ROW_EVENTS:
            op, compressed, v2 = c.ROW_EVENTS[code]
            plen = post(code, 10 if v2 else 8)
            tid = table_id_at(head, plen)
            known = self.tables.get(tid)
            rows = None
            if known is not None and large is None:
                update, partial = op == "UPDATE", code == c.PARTIAL_UPDATE_ROWS
                rows = count_rows(head, plen, v2, update, compressed, partial, known, self.limit)
            table = known.name if known else None
            return {"op": op, "table_id": tid, "table": table, "rows": rows}
        if code == c.TRANSACTION_PAYLOAD:
            header = ev.payload_header(head, large.size if large is not None else len(head))
            return header._asdict()
        return {}


def _event(raw: RawEvent, fields: dict[str, Any], payload_offset: int | None) -> Event:
    offset, ts, code, server_id, size, flags, _head, _large = raw
    return Event(offset, size, code, c.event_name(code), ts, server_id, flags, fields,
                 payload_offset)  # fmt: skip


def iter_events(fileobj: BinaryIO, name: str = "binlog", *,
                max_in_memory: int = MAX_IN_MEMORY) -> Iterator[Event]:  # fmt: skip
    """Decode every event of a binlog, including those inside TRANSACTION_PAYLOAD events
    (yielded right after their payload event). A torn last event ends the iteration."""
    stream = EventStream(fileobj, name, max_in_memory=max_in_memory)
    events = iter(stream)
    first = next(events)
    assert stream.fde is not None
    decoder = _Decoder(name, stream.fde, max_in_memory)
    yield _event(first, _decode(decoder, first), None)
    try:
        for raw in events:
            yield _event(raw, _decode(decoder, raw), None)
            if raw[2] == c.TRANSACTION_PAYLOAD:
                for inner in payload_events(raw[6], raw[7], name, raw[0], max_in_memory):
                    yield _event(inner, _decode(decoder, inner), raw[0])
    except TornTail as exc:
        if exc.stream is not stream:
            raise FormatError(f"{name}: malformed payload event") from exc
        stream.torn(events)


def _decode(decoder: _Decoder, raw: RawEvent) -> dict[str, Any]:
    try:
        return decoder.fields(raw[2], raw[3], raw[6], raw[7])
    except (*ev.DECODE_ERRORS, UsageError) as exc:
        what = c.event_name(raw[2])
        raise FormatError(f"{decoder.name}: malformed {what} event at offset {raw[0]}") from exc
