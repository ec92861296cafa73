"""Walk the records of a PostgreSQL WAL file in pure Python, without a server.

The reader follows PostgreSQL's xlogreader.c. A file is a run of pages (``XLOG_BLCKSZ``, 8 KiB);
each page starts with a header, long (40 bytes) on the first page of a segment and short (24)
elsewhere. Records are MAXALIGNed (8 bytes) and may be split across pages: the continuation
page has XLP_FIRST_IS_CONTRECORD and says how many bytes are left (``xlp_rem_len``). Every
record's CRC-32C is checked unless ``verify=False``.

Valid WAL ends where recovery would stop reading it, which is not an error: zeroed space, a
page or record header that does not fit (a recycled segment's old contents), a bad checksum,
the end of the file (a ``.partial`` copy), or an XLOG SWITCH record (the rest of the segment
is padding). :class:`WalReader` says where and why in ``end_lsn`` and ``end_reason``.
:class:`~pitr.errors.FormatError` is for a file whose first page is not a WAL page, and for a
record that passes its checksum but does not decode.

Pages of PostgreSQL 10 to 18 are read (the record format is the same; 18's dropped-stats items
in commit records are 4 bytes longer). Only what
point-in-time recovery needs is decoded: transaction ends (commit, abort and their two-phase
forms: xid and time) and restore points (name and time).
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import BinaryIO

from pitr.domain.positions import format_lsn
from pitr.engines.postgresql.walfile import WAL_MAGIC, XLP_LONG_HEADER, PageHeader
from pitr.errors import FormatError

#: Page magic → major version; walfile knows 13+, the upstream test vectors are 10 and 11.
PAGE_MAGIC = {0xD097: 10, 0xD098: 11, 0xD101: 12, **WAL_MAGIC}

_PAGE = struct.Struct("<HHIQI")  # magic, info, tli, pageaddr, rem_len
_LONG_TAIL = struct.Struct("<QII")  # sysid, seg_size, blcksz (at offset 24)
SHORT_HEADER, LONG_HEADER = 24, 40
XLP_FIRST_IS_CONTRECORD = 0x0001
XLP_ALL_FLAGS = 0x000F
DEFAULT_BLOCK_SIZE = 8192
_SEGMENT_SIZES = {1 << n for n in range(20, 31)}  # 1 MB to 1 GB (initdb --wal-segsize)
_BLOCK_SIZES = {1 << n for n in range(10, 17)}  # 1 to 64 KiB (configure --with-wal-blocksize)

_RECORD = struct.Struct("<IIQBBxxI")  # xl_tot_len, xl_xid, xl_prev, xl_info, xl_rmid, xl_crc
RECORD_HEADER = _RECORD.size  # 24
_CRC_OFFSET = 20
RM_MAX_BUILTIN, RM_MIN_CUSTOM = 21, 128

RM_XLOG, RM_XACT = 0, 1
XLOG_SWITCH, XLOG_RESTORE_POINT = 0x40, 0x70
XLOG_XACT_OPMASK, XLOG_XACT_HAS_INFO = 0x70, 0x80
#: xl_info & XLOG_XACT_OPMASK → (status, prepared): COMMIT, ABORT, COMMIT/ABORT_PREPARED
_XACT_KINDS = {
    0x00: ("commit", False),
    0x20: ("abort", False),
    0x30: ("commit", True),
    0x40: ("abort", True),
}

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _align(n: int) -> int:
    return (n + 7) & ~7


# --- CRC-32C (Castagnoli, reflected 0x82F63B78), as PostgreSQL's COMP_CRC32C ----------------


@cache
def _crc_tables() -> tuple[list[int], list[int], list[int]]:
    """The byte table, and two 16-bit tables that fold 4 bytes per step (slicing by 2x16)."""
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    # two zero bytes through the register: x → its effect; then four bytes
    two = [
        table[(table[x & 0xFF] ^ (x >> 8)) & 0xFF] ^ (table[x & 0xFF] >> 8) for x in range(65536)
    ]
    four = [two[v & 0xFFFF] ^ (v >> 16) for v in two]
    return table, two, four


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (a finished value, as zlib.crc32 does)."""
    table, two, four = _crc_tables()
    crc ^= 0xFFFFFFFF
    whole = len(data) & ~3
    words = array("I", data[:whole])  # four bytes at a time, little-endian as CRC-32C wants
    if sys.byteorder == "big":
        words.byteswap()
    for word in words:
        crc ^= word
        crc = four[crc & 0xFFFF] ^ two[crc >> 16]
    for byte in data[whole:]:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One record: where it is, its header fields, and its bytes (header included)."""

    lsn: int
    end_lsn: int  # just past its last byte (the next record starts MAXALIGNed after it)
    xid: int
    prev: int
    info: int
    rmid: int
    version: int  # PostgreSQL major version, from the page magic
    data: bytes


@dataclass(frozen=True, slots=True)
class XactEnd:
    """A transaction's commit or abort record; ``xid`` is the prepared one's for 2PC."""

    status: str  # "commit" | "abort"
    xid: int
    time: datetime
    prepared: bool
    lsn: int
    end_lsn: int


@dataclass(frozen=True, slots=True)
class RestorePoint:
    name: str
    time: datetime
    lsn: int
    end_lsn: int


def main_data(record: WalRecord) -> bytes:
    """The rmgr's main data, after the block references (xlogrecord.h, DecodeXLogRecord)."""
    data, end = record.data, len(record.data)
    pos, payload, main, last_block = RECORD_HEADER, 0, 0, -1
    compressed = 0x1C if record.version >= 15 else 0x02  # BKPIMAGE_COMPRESS_* / IS_COMPRESSED
    where = f"record at {format_lsn(record.lsn)}"
    try:
        while end - pos > payload:
            block_id = data[pos]
            pos += 1
            if block_id == 255:  # XLR_BLOCK_ID_DATA_SHORT: the main data comes last
                main = data[pos]
                pos += 1
                break
            if block_id == 254:  # XLR_BLOCK_ID_DATA_LONG
                (main,) = struct.unpack_from("<I", data, pos)
                pos += 4
                break
            if block_id == 253:  # XLR_BLOCK_ID_ORIGIN: RepOriginId
                pos += 2
            elif block_id == 252:  # XLR_BLOCK_ID_TOPLEVEL_XID
                pos += 4
            elif last_block < block_id <= 32:
                last_block = block_id
                fork_flags, data_len = struct.unpack_from("<BH", data, pos)
                pos += 3
                if bool(fork_flags & 0x20) != bool(data_len):  # BKPBLOCK_HAS_DATA
                    raise FormatError(f"{where}: block data flag and length disagree")
                payload += data_len
                if fork_flags & 0x10:  # BKPBLOCK_HAS_IMAGE
                    image_len, _hole_offset, bimg_info = struct.unpack_from("<HHB", data, pos)
                    pos += 5
                    payload += image_len
                    if bimg_info & compressed and bimg_info & 0x01:  # a hole length follows
                        pos += 2
                if not fork_flags & 0x80:  # not BKPBLOCK_SAME_REL: a RelFileNode follows
                    pos += 12
                pos += 4  # BlockNumber
            else:
                raise FormatError(f"{where}: unexpected block id {block_id}")
    except (IndexError, struct.error):
        raise FormatError(f"{where}: block headers run past the record") from None
    if end - pos != payload + main:
        raise FormatError(f"{where}: block headers do not add up to the record length")
    return data[end - main :]


def _pg_time(micros: int, record: WalRecord) -> datetime:
    try:
        return PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise FormatError(f"record at {format_lsn(record.lsn)}: time out of range") from None


def decode_xact(record: WalRecord) -> XactEnd | None:
    """The commit/abort a Transaction-rmgr record ends (xl_xact_commit/abort, xact.h)."""
    if record.rmid != RM_XACT or record.info & XLOG_XACT_OPMASK not in _XACT_KINDS:
        return None
    status, prepared = _XACT_KINDS[record.info & XLOG_XACT_OPMASK]
    main = main_data(record)
    try:
        (micros,) = struct.unpack_from("<q", main)
        xid = record.xid
        if prepared:
            xid = _twophase_xid(main, record.info, status == "commit", record.version)
    except (struct.error, ValueError):
        raise FormatError(f"record at {format_lsn(record.lsn)}: short {status} record") from None
    return XactEnd(status, xid, _pg_time(micros, record), prepared, record.lsn, record.end_lsn)


def _twophase_xid(main: bytes, info: int, commit: bool, version: int) -> int:
    """xl_xact_twophase.xid, after the optional parts xl_xact_xinfo says are present. A
    dropped-stats item (xl_xact_stats_item) is 12 bytes up to PostgreSQL 17 and 16 from 18 on
    (the object id became 64 bits)."""
    pos, xinfo = 8, 0
    if info & XLOG_XACT_HAS_INFO:
        (xinfo,) = struct.unpack_from("<I", main, pos)
        pos += 4
    if xinfo & 0x01:  # XACT_XINFO_HAS_DBINFO
        pos += 8
    # counted arrays: subxact xids, relfilenodes, dropped stats, invalidations (commit only)
    stats_item = 16 if version >= 18 else 12
    arrays = [(0x02, 4), (0x04, 12), (0x100, stats_item)] + ([(0x08, 16)] if commit else [])
    for flag, size in arrays:
        if xinfo & flag:
            (count,) = struct.unpack_from("<i", main, pos)
            if count < 0:
                raise ValueError("negative count")
            pos += 4 + count * size
    if not xinfo & 0x10:  # XACT_XINFO_HAS_TWOPHASE
        raise ValueError("two-phase record without its xid")
    return int(struct.unpack_from("<I", main, pos)[0])


def decode_restore_point(record: WalRecord) -> RestorePoint | None:
    """xl_restore_point: TimestampTz rp_time, char rp_name[64]."""
    if record.rmid != RM_XLOG or record.info & 0xF0 != XLOG_RESTORE_POINT:
        return None
    main = main_data(record)
    if len(main) < 72:
        raise FormatError(f"record at {format_lsn(record.lsn)}: short restore point record")
    (micros,) = struct.unpack_from("<q", main)
    name = main[8:72].split(b"\0", 1)[0].decode("utf-8", "replace")
    return RestorePoint(name, _pg_time(micros, record), record.lsn, record.end_lsn)


def is_switch(record: WalRecord) -> bool:
    return record.rmid == RM_XLOG and record.info & 0xF0 == XLOG_SWITCH


# --- pages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Page:
    lsn: int
    info: int
    rem_len: int
    header_size: int
    data: bytes


class WalReader:
    """The valid records of one WAL file: a segment, a ``.partial`` one, or a run of pages.

    Iterate it once; afterwards ``end_lsn`` is where valid WAL ends (just past the last
    record), ``end_reason`` why reading stopped, ``switched`` whether an XLOG SWITCH record
    ended it, and ``records`` how many records were read. ``header`` is the long page header
    when the file starts a segment (None for a run of pages starting mid-segment).
    """

    def __init__(self, fileobj: BinaryIO, name: str, *, verify: bool = True) -> None:
        self.name = name
        self.verify = verify
        self._file = fileobj
        head = fileobj.read(LONG_HEADER)
        if len(head) < SHORT_HEADER:
            raise FormatError(f"{name}: too short to be PostgreSQL WAL ({len(head)} bytes)")
        magic, info, tli, pageaddr, _rem_len = _PAGE.unpack_from(head)
        if magic not in PAGE_MAGIC:
            raise FormatError(f"{name}: not PostgreSQL WAL (page magic 0x{magic:04X})")
        self.version = PAGE_MAGIC[magic]
        self.header: PageHeader | None = None
        self.block_size = DEFAULT_BLOCK_SIZE
        if info & XLP_LONG_HEADER:
            if len(head) < LONG_HEADER:
                raise FormatError(f"{name}: too short to be a WAL segment ({len(head)} bytes)")
            sysid, seg_size, blcksz = _LONG_TAIL.unpack_from(head, SHORT_HEADER)
            if seg_size not in _SEGMENT_SIZES or blcksz not in _BLOCK_SIZES:
                raise FormatError(f"{name}: implausible segment/block size ({seg_size}/{blcksz})")
            self.header = PageHeader(self.version, tli, pageaddr, sysid, seg_size, blcksz)
            self.block_size = blcksz
        if (
            info & ~XLP_ALL_FLAGS
            or pageaddr % self.block_size
            or (self.header and pageaddr % self.header.segment_size)
        ):
            raise FormatError(f"{name}: invalid first page header (info 0x{info:04X})")
        self._magic, self._tli = magic, tli
        self._page_lsn = pageaddr - self.block_size  # _next_page reads the first page
        self._head = head
        self.start_lsn = self.end_lsn = pageaddr
        self.end_reason = ""
        self.switched = False
        self.records = 0

    def __iter__(self) -> Iterator[WalRecord]:
        try:
            yield from self._walk()
        except _End as end:
            self.end_reason = str(end)

    def _walk(self) -> Iterator[WalRecord]:
        page = self._next_page(0)
        off = page.header_size
        if page.info & XLP_FIRST_IS_CONTRECORD:  # the tail of a record begun before this file
            rem = page.rem_len
            while rem > self.block_size - off:
                rem -= self.block_size - off
                page = self._next_page(rem)
                off = page.header_size
            off = _align(off + rem)
            self.end_lsn = page.lsn + off
        prev: int | None = None
        while True:
            if off >= self.block_size:
                page = self._next_page(0)
                off = page.header_size
            lsn = page.lsn + off
            (total,) = struct.unpack_from("<I", page.data, off)
            if total < RECORD_HEADER:
                raise _End.at("zeroed space" if total == 0 else "invalid record length", lsn)
            parts = [page.data[off : off + total]]
            got = len(parts[0])
            off += got
            while got < total:
                page = self._next_page(total - got)
                parts.append(page.data[page.header_size : page.header_size + total - got])
                got += len(parts[-1])
                off = page.header_size + len(parts[-1])
            record = self._record(b"".join(parts), lsn, page.lsn + off, prev)
            self.records += 1
            self.end_lsn = record.end_lsn
            yield record
            if is_switch(record):
                self.switched = True
                self.end_reason = "XLOG SWITCH: the rest of the segment is unused"
                return
            prev = lsn
            off = _align(off)

    def _record(self, data: bytes, lsn: int, end: int, prev: int | None) -> WalRecord:
        """The record, if its header and checksum are right (ValidXLogRecordHeader)."""
        _total, xid, xl_prev, info, rmid, crc = _RECORD.unpack_from(data)
        if RM_MAX_BUILTIN < rmid < RM_MIN_CUSTOM:
            raise _End.at(f"invalid resource manager ID {rmid}", lsn)
        if xl_prev >= lsn if prev is None else xl_prev != prev:
            raise _End.at("record with incorrect prev-link", lsn)
        if self.verify and crc32c(data[RECORD_HEADER:] + data[:_CRC_OFFSET]) != crc:
            raise _End.at("incorrect resource manager data checksum", lsn)
        return WalRecord(lsn, end, xid, xl_prev, info, rmid, self.version, data)

    def _next_page(self, continuing: int) -> _Page:
        """The next page, if its header is valid where it is; ``continuing``: the bytes still
        owed to a record begun on an earlier page."""
        lsn = self._page_lsn + self.block_size
        raw = self._head + self._file.read(self.block_size - len(self._head))
        self._head = b""
        if len(raw) < self.block_size:
            where = "a record" if continuing else "a page" if raw else None
            raise _End.at(f"file ends inside {where}" if where else "end of file", lsn)
        magic, info, tli, pageaddr, rem_len = _PAGE.unpack_from(raw)
        if magic != self._magic:
            raise _End.at("zeroed page" if not raw.strip(b"\0") else "invalid magic number", lsn)
        if info & ~XLP_ALL_FLAGS or pageaddr != lsn or tli < self._tli:
            raise _End.at(f"invalid page header (pageaddr {format_lsn(pageaddr)}, TLI {tli})", lsn)
        if info & XLP_LONG_HEADER:
            geometry = _LONG_TAIL.unpack_from(raw, SHORT_HEADER)
            header = self.header
            if header and geometry != (header.system_id, header.segment_size, header.block_size):
                raise _End.at("long page header of another system or geometry", lsn)
        elif self.header and lsn % self.header.segment_size == 0:
            raise _End.at("missing long header at a segment start", lsn)
        if continuing and (not info & XLP_FIRST_IS_CONTRECORD or rem_len != continuing):
            raise _End.at("no continuation of the record begun on the previous page", lsn)
        if not continuing and lsn != self.start_lsn and info & XLP_FIRST_IS_CONTRECORD:
            raise _End.at("a continuation where a record should start", lsn)
        self._page_lsn, self._tli = lsn, tli
        return _Page(
            lsn, info, rem_len, LONG_HEADER if info & XLP_LONG_HEADER else SHORT_HEADER, raw
        )


class _End(Exception):
    """Where valid WAL ends, and why: raised inside the walk, never out of it."""

    @classmethod
    def at(cls, reason: str, lsn: int) -> _End:
        return cls(f"{reason} at {format_lsn(lsn)}")


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """A segment's facts for ``pitr inspect``: its long page header, the file's size, where
    valid WAL in it ends and why (see :class:`WalReader`), its transaction ends and restore
    points."""

    header: PageHeader
    size: int
    end_lsn: int
    end_reason: str
    switched: bool
    records: int
    transactions: tuple[XactEnd, ...]
    restore_points: tuple[RestorePoint, ...]

    @property
    def truncated(self) -> bool:
        """Shorter than a segment."""
        return self.size < self.header.segment_size

    @property
    def first_time(self) -> datetime | None:
        """The first commit time in it."""
        return min((x.time for x in self.transactions if x.status == "commit"), default=None)

    @property
    def last_time(self) -> datetime | None:
        return max((x.time for x in self.transactions if x.status == "commit"), default=None)


def summarize_segment(path: str | os.PathLike[str], *, verify: bool = True) -> SegmentSummary:
    """Read a segment whole; :class:`FormatError` if it does not start a segment."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        reader = WalReader(f, name, verify=verify)
        if reader.header is None:
            raise FormatError(f"{name}: WAL pages, but not a segment (no long page header)")
        xacts: list[XactEnd] = []
        points: list[RestorePoint] = []
        try:
            for record in reader:
                if xact := decode_xact(record):
                    xacts.append(xact)
                elif point := decode_restore_point(record):
                    points.append(point)
        except FormatError as exc:  # a record that passed its checksum but does not decode
            raise FormatError(f"{name}: {exc.message}") from None
        size = os.fstat(f.fileno()).st_size
    return SegmentSummary(
        reader.header,
        size,
        reader.end_lsn,
        reader.end_reason,
        reader.switched,
        reader.records,
        tuple(xacts),
        tuple(points),
    )


def iter_records(fileobj: BinaryIO, name: str, *, verify: bool = True) -> Iterator[WalRecord]:
    """The valid records of a WAL file (see :class:`WalReader` for where and why they end)."""
    return iter(WalReader(fileobj, name, verify=verify))
