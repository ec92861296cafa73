"""Decoders for the bodies (post-header + payload, checksum excluded) of individual event types.

Every decoder takes the body as a memoryview or bytes. A malformed body makes them raise
:class:`Malformed` (or one of the low-level errors in :data:`DECODE_ERRORS`); callers turn
those into :class:`pitr.errors.FormatError` naming the file and the event's offset.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import NamedTuple

Buffer = memoryview | bytes

QUERY_TEXT_LIMIT = 4096
"""Bytes of a statement kept for summaries and ``pitr inspect``."""


class Malformed(ValueError):
    """An event body does not decode."""


DECODE_ERRORS = (Malformed, struct.error, IndexError, ValueError, zlib.error)

_TAG = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{0,31}")
_MAX_COMMIT_US = 1 << 56  # 7-byte field; far below datetime's year 9999

MARIA_GTID = struct.Struct("<QIB")  # seq, domain, flags
_MARIA_LIST_ENTRY = struct.Struct("<IIQ")
_MYSQL_GTID = struct.Struct("<B16sq")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_QUERY_POST = struct.Struct("<IIBHH")  # thread id, exec time, db length, error code, status len

# MariaDB GTID event flags
FL_STANDALONE = 0x01
FL_GROUP_COMMIT_ID = 0x02
MARIA_GTID_FLAGS = {
    FL_STANDALONE: "standalone",
    FL_GROUP_COMMIT_ID: "group_commit_id",
    0x04: "transactional",
    0x08: "allow_parallel",
    0x10: "waited",
    0x20: "ddl",
    0x40: "prepared_xa",
    0x80: "completed_xa",
}


def packed_int(data: Buffer, pos: int) -> tuple[int, int]:
    """MySQL's length-encoded integer at ``pos``; returns (value, position after it)."""
    first = data[pos]
    if first < 251:
        return first, pos + 1
    if first == 252:
        return data[pos + 1] | data[pos + 2] << 8, pos + 3
    if first == 253:
        return data[pos + 1] | data[pos + 2] << 8 | data[pos + 3] << 16, pos + 4
    if first == 254:
        return _U64.unpack_from(data, pos + 1)[0], pos + 9
    raise Malformed(f"invalid length-encoded integer prefix {first}")


def _need(data: Buffer, end: int) -> None:
    if end > len(data):
        raise Malformed("event body shorter than its fields")


def uuid_text(raw: Buffer) -> str:
    h = bytes(raw).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- MariaDB -----------------------------------------------------------------------------------


class MariaGtidEvent(NamedTuple):
    seq: int
    domain: int
    flags: int
    commit_id: int | None


def maria_gtid(body: Buffer) -> MariaGtidEvent:
    seq, domain, flags = MARIA_GTID.unpack_from(body)
    commit_id = _U64.unpack_from(body, 13)[0] if flags & FL_GROUP_COMMIT_ID else None
    return MariaGtidEvent(seq, domain, flags, commit_id)


def maria_gtid_list(body: Buffer) -> list[tuple[int, int, int]]:
    """GTID_LIST entries as (domain, server_id, seq)."""
    count = _U32.unpack_from(body)[0] & 0x0FFFFFFF
    _need(body, 4 + count * _MARIA_LIST_ENTRY.size)
    return [_MARIA_LIST_ENTRY.unpack_from(body, 4 + i * 16) for i in range(count)]


def maria_uncompress(data: Buffer, limit: int) -> bytes:
    """Inflate MariaDB's compressed-event format: a header byte 0x8L (L = bytes of the
    big-endian uncompressed length that follow), then a zlib stream. At most ``limit`` bytes
    are produced; fewer than announced (and than ``limit``) means a corrupt event."""
    head = data[0]
    if head & 0xF0 != 0x80 or not 1 <= head & 0x07 <= 4:
        raise Malformed(f"bad compressed-event header byte {head:#x}")
    lenlen = head & 0x07
    want = int.from_bytes(data[1 : 1 + lenlen], "big")
    out = zlib.decompressobj().decompress(data[1 + lenlen :], min(want, limit))
    if len(out) < min(want, limit):
        raise Malformed("compressed event inflates to less than its announced length")
    return out


# --- MySQL GTIDs -------------------------------------------------------------------------------


class MysqlGtidEvent(NamedTuple):
    flags: int
    uuid: str
    tag: str
    gno: int
    commit_us: int | None
    """immediate_commit_timestamp (µs since the epoch) when the server wrote one."""


def mysql_gtid(body: Buffer) -> MysqlGtidEvent:
    """GTID (33) and ANONYMOUS_GTID (34) events, 5.6 to 9.x layouts."""
    flags, sid, gno = _MYSQL_GTID.unpack_from(body)
    commit_us = None
    pos = _MYSQL_GTID.size
    if len(body) > pos and body[pos] == 2 and len(body) >= pos + 1 + 16 + 7:
        pos += 1 + 16
        commit_us = int.from_bytes(body[pos : pos + 7], "little") & ~(1 << 55)
    return MysqlGtidEvent(flags, uuid_text(sid), "", gno, commit_us or None)


def _varlen(data: Buffer, pos: int) -> tuple[int, int]:
    """An unsigned integer of the mysql::serialization format: the count of trailing one-bits
    of the first byte gives the number of extra bytes (all eight when it is 0xff)."""
    first = data[pos]
    if first == 0xFF:
        _need(data, pos + 9)
        return _U64.unpack_from(data, pos + 1)[0], pos + 9
    n = 1
    while first & (1 << (n - 1)):
        n += 1
    _need(data, pos + n)
    return int.from_bytes(data[pos : pos + n], "little") >> n, pos + n


def _varlen_signed(data: Buffer, pos: int) -> tuple[int, int]:
    value, pos = _varlen(data, pos)
    return (-(value >> 1) - 1 if value & 1 else value >> 1), pos


def mysql_gtid_tagged(body: Buffer) -> MysqlGtidEvent:
    """GTID_TAGGED (42): a mysql::serialization message (version 2): version byte, message
    size, last non-ignorable field id, then (field id, value) pairs."""
    if body[0] != 2:
        raise Malformed(f"unsupported tagged GTID serialization version {body[0]}")
    size, pos = _varlen(body, 1)
    last_required, pos = _varlen(body, pos)
    if size > len(body) or size < pos:
        raise Malformed("tagged GTID message size out of range")
    flags, sid, gno, tag, commit_us = 0, b"\0" * 16, 0, "", 0
    while pos < size:
        field, pos = _varlen(body, pos)
        if field == 0:
            flags, pos = _varlen(body, pos)
        elif field == 1:
            raw = bytearray()
            for _ in range(16):
                byte, pos = _varlen(body, pos)
                raw.append(byte & 0xFF)
            sid = bytes(raw)
        elif field in (2, 4, 5):
            value, pos = _varlen_signed(body, pos)
            if field == 2:
                gno = value
        elif field == 3:
            length, pos = _varlen(body, pos)
            _need(body, pos + length)
            tag = _tag(body[pos : pos + length])
            pos += length
        elif field in (6, 7, 8, 9, 10, 11):
            value, pos = _varlen(body, pos)
            if field == 6:
                commit_us = value
        elif field <= last_required:
            raise Malformed(f"unknown required field {field} in tagged GTID event")
        else:
            break
    if not tag or gno < 1 or commit_us >= _MAX_COMMIT_US:
        raise Malformed("tagged GTID event without tag or number")
    return MysqlGtidEvent(flags, uuid_text(sid), tag, gno, commit_us or None)


def _tag(raw: Buffer) -> str:
    data = bytes(raw)
    if _TAG.fullmatch(data) is None:
        raise Malformed(f"invalid GTID tag {data!r}")
    return data.decode("ascii").lower()


def previous_gtids(body: Buffer) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """PREVIOUS_GTIDS (35), untagged or tagged format, as {(uuid, tag): [closed intervals]}."""
    head = _U64.unpack_from(body)[0]
    tagged = head & 0xFF == 1 and head >> 56 == 1
    count = (head >> 8) & ((1 << 48) - 1) if tagged else head
    pos = 8
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for _ in range(count):
        _need(body, pos + 16)
        uuid = uuid_text(body[pos : pos + 16])
        pos += 16
        tag = ""
        if tagged:
            length, pos = _varlen(body, pos)
            _need(body, pos + length)
            tag = _tag(body[pos : pos + length]) if length else ""
            pos += length
        n = _U64.unpack_from(body, pos)[0]
        pos += 8
        _need(body, pos + 16 * n)
        intervals = out.setdefault((uuid, tag), [])
        for _ in range(n):
            start, stop = struct.unpack_from("<qq", body, pos)
            pos += 16
            if not 1 <= start < stop:
                raise Malformed(f"bad GTID interval [{start}, {stop})")
            intervals.append((start, stop - 1))
    return out


class PayloadHeader(NamedTuple):
    compression: int  # 0 = zstd, 255 = none
    payload_size: int
    uncompressed_size: int
    header_len: int


def payload_header(body: Buffer, total: int) -> PayloadHeader:
    """TRANSACTION_PAYLOAD (40): (type, length, value) fields up to an end mark (type 0).

    ``body`` may be just the first bytes of a body of ``total`` bytes."""
    pos = 0
    values = {1: 0, 2: 0, 3: 0}
    while True:
        kind, pos = packed_int(body, pos)
        if kind == 0:
            break
        length, pos = packed_int(body, pos)
        if kind in values:
            values[kind] = packed_int(body, pos)[0]
        pos += length
    if values[1] != total - pos:
        raise Malformed("transaction payload size does not match the event size")
    return PayloadHeader(values[2], values[1], values[3], pos)


# --- Common events -----------------------------------------------------------------------------


class QueryEvent(NamedTuple):
    db: str
    text: str
    """The statement (its first :data:`QUERY_TEXT_LIMIT` bytes)."""
    xid: int | None
    """Q_DDL_LOGGED_WITH_XID / MariaDB Q_XID status variable."""
    hrnow_us: int | None
    """MariaDB Q_HRNOW: microseconds of the statement's start time (within its second)."""


# Status variables: code -> fixed length (None: variable-length, handled below).
_STATUS_FIXED = {
    0: 4, 1: 8, 3: 4, 4: 6, 7: 2, 8: 2, 9: 8, 10: 4, 13: 3, 16: 1, 17: 8, 18: 2, 19: 1,
    20: 1, 128: 3, 129: 8, 130: 1,
}  # fmt: skip


def _status_vars(data: Buffer, pos: int, end: int) -> tuple[int | None, int | None]:
    """Walk the status variables for (xid, hrnow µs); stops at a code it does not know."""
    xid = hrnow = None
    while pos < end:
        code = data[pos]
        pos += 1
        fixed = _STATUS_FIXED.get(code)
        if fixed is not None:
            if code in (17, 129):
                xid = _U64.unpack_from(data, pos)[0]
            elif code == 128:
                hrnow = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            pos += fixed
        elif code in (2, 5, 6):  # catalog (with a NUL), time zone, catalog: length-prefixed
            pos += 1 + data[pos] + (code == 2)
        elif code == 11:  # invoker: user, host
            pos += 1 + data[pos]
            pos += 1 + data[pos]
        elif code == 12:  # updated db names
            count = data[pos]
            pos += 1
            for _ in range(count if count != 254 else 0):
                while data[pos]:
                    pos += 1
                pos += 1
        elif code == 131:  # MariaDB character set collations: count, pairs of 2+2 bytes
            pos += 1 + 4 * data[pos]
        else:
            break
    return xid, hrnow


def query(body: Buffer, post_len: int, compressed: bool) -> QueryEvent:
    _, _, db_len, _, status_len = _QUERY_POST.unpack_from(body)
    start = post_len + status_len
    _need(body, start + db_len + 1)
    xid, hrnow = _status_vars(body, post_len, start)
    db = bytes(body[start : start + db_len]).decode("utf-8", "replace")
    text_at = start + db_len + 1
    if compressed:
        raw: Buffer = maria_uncompress(body[text_at:], QUERY_TEXT_LIMIT)
    else:
        raw = body[text_at : text_at + QUERY_TEXT_LIMIT]
    return QueryEvent(db, bytes(raw).decode("utf-8", "replace"), xid, hrnow)


def rotate(body: Buffer) -> tuple[int, str]:
    position = _U64.unpack_from(body)[0]
    return position, bytes(body[8:]).decode("utf-8", "replace")


def xid(body: Buffer) -> int:
    value: int = _U64.unpack_from(body)[0]
    return value


def text_body(body: Buffer, skip: int = 0) -> str:
    """ANNOTATE_ROWS, ROWS_QUERY (skip 1 length byte), BINLOG_CHECKPOINT (skip 4)."""
    return bytes(body[skip : skip + QUERY_TEXT_LIMIT]).decode("utf-8", "replace")
