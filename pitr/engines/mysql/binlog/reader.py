"""Framing of a binlog: magic, v4 event headers, CRC32 checksums, the format description event.

:class:`EventStream` reads a binary file object in chunks and yields one ``RawEvent`` tuple per
complete event, with offsets counted by the reader itself (never from ``next_position``, which
is 32 bits wide and is 0 inside some servers' transactions). Memory stays bounded: an event
larger than ``max_in_memory`` is handed out as a :class:`LargeBody` that the consumer reads
piecewise (or not at all); its checksum is verified as it streams past.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from pitr.engines.mysql.binlog import consts
from pitr.errors import FormatError

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
HEADER_LEN = 19
CRC_LEN = 4
CHUNK = 1 << 20
MAX_IN_MEMORY = 32 << 20
HEAD_SIZE = 64 << 10
LOG_EVENT_BINLOG_IN_USE_F = 0x1
FLAGS_OFFSET = 17  # of the flags field within an event header

_U32 = struct.Struct("<I")
# The CRC32 of any bytes followed by their own CRC32 (little-endian) is this constant, and of
# no other 4 bytes appended: a single crc32() over a whole event checks its stored checksum.
CRC_RESIDUE = 0x2144DF1C
_FDE_FIXED = struct.Struct("<H50sIB")  # binlog version, server version, create time, header len


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class TornTail(Exception):
    """A :class:`LargeBody` ran into the end of its stream's input: its event is incomplete."""

    def __init__(self, stream: EventStream) -> None:
        super().__init__(stream.name)
        self.stream = stream


class LargeBody:
    """The body of an event too large to hold in memory (header and checksum excluded).

    ``head`` holds its first bytes; :meth:`read` returns the bytes after those, in order. The
    stream skips whatever the consumer leaves unread when it moves on to the next event.
    """

    def __init__(self, head: bytes, size: int, source: _Source, stream: EventStream) -> None:
        self.head = head
        self._stream = stream
        self.size = size
        self.remaining = size - len(head)
        self._source = source

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        if n == 0:
            return b""
        data = self._source.take(n)
        if len(data) < n:
            raise TornTail(self._stream)
        self.remaining -= n
        return data


RawEvent = tuple[int, int, int, int, int, int, memoryview | bytes, LargeBody | None]
"""``(offset, timestamp, type code, server_id, event size, flags, head, large)``: ``head`` is
the whole body (header and checksum excluded) of an event held in memory, or the first bytes
of a larger one, which then comes with a :class:`LargeBody` in ``large``."""


class _Source:
    """Sequential reads that update a running CRC32 (for events streamed past the buffer)."""

    def __init__(self, stream: EventStream, pending: bytes) -> None:
        self._read = stream.read_raw
        self._pending = pending
        self._checksum = stream.checksum
        self.crc = 0

    def take(self, n: int) -> bytes:
        parts = []
        if self._pending:
            parts.append(self._pending[:n])
            self._pending = self._pending[n:]
            n -= len(parts[0])
        while n > 0:
            data = self._read(min(n, CHUNK))
            if not data:
                break
            parts.append(data)
            n -= len(data)
        out = b"".join(parts)
        if self._checksum:
            self.crc = zlib.crc32(out, self.crc)
        return out

    def leftover(self) -> bytes:
        return self._pending


@dataclass(frozen=True, slots=True)
class FormatDescription:
    """What the format description event (type 15) says about the file."""

    binlog_version: int
    server_version: str
    create_time: int
    header_length: int
    post_header_lengths: bytes
    checksum: bool
    in_use: bool

    @property
    def flavor(self) -> str:
        return "mariadb" if "mariadb" in self.server_version.lower() else "mysql"

    def post_header_len(self, code: int, default: int) -> int:
        if 0 < code <= len(self.post_header_lengths):
            return self.post_header_lengths[code - 1]
        return default


def _version_tuple(version: str) -> tuple[int, int, int]:
    nums: list[int] = []
    for part in version.split("-", 1)[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        nums.append(int(digits) if digits else 0)
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def parse_fde(event: bytes, name: str) -> FormatDescription:
    """Decode a whole format description event (header included) and verify its checksum."""
    size = len(event)
    if size < HEADER_LEN + _FDE_FIXED.size:
        raise FormatError(f"{name}: format description event too short ({size} bytes) at offset 4")
    flags = HEADER.unpack_from(event)[5]
    binlog_version, raw_version, create_time, header_len = _FDE_FIXED.unpack_from(event, HEADER_LEN)
    if binlog_version != 4 or header_len != HEADER_LEN:
        raise FormatError(
            f"{name}: unsupported binlog format (version {binlog_version}, header length "
            f"{header_len}) at offset 4"
        )
    version = raw_version.split(b"\0", 1)[0].decode("ascii", "replace")
    tables_at = HEADER_LEN + _FDE_FIXED.size
    # Servers from MySQL 5.6.1 and MariaDB 5.3 end the event with a checksum algorithm byte and
    # a 4-byte checksum (written even when checksums are off).
    vt = _version_tuple(version)
    has_alg = vt >= (5, 6, 1) or ("mariadb" in version.lower() and vt >= (5, 3, 0))
    checksum = False
    tables_end = size
    if has_alg:
        tables_end = size - 1 - CRC_LEN
        if tables_end < tables_at:
            raise FormatError(f"{name}: format description event too short at offset 4")
        alg = event[tables_end]
        if alg not in (0, 1, 255):
            raise FormatError(f"{name}: unknown checksum algorithm {alg} at offset 4")
        checksum = alg == 1
    if checksum:
        stored = _U32.unpack_from(event, size - CRC_LEN)[0]
        if zlib.crc32(event[: size - CRC_LEN]) != stored:
            # A server computes the FDE's checksum before it sets the in-use flag.
            cleared = bytearray(event[: size - CRC_LEN])
            cleared[FLAGS_OFFSET] &= ~LOG_EVENT_BINLOG_IN_USE_F & 0xFF
            if zlib.crc32(cleared) != stored:
                raise FormatError(f"{name}: checksum mismatch in event at offset 4")
    return FormatDescription(
        binlog_version=binlog_version,
        server_version=version,
        create_time=create_time,
        header_length=header_len,
        post_header_lengths=bytes(event[tables_at:tables_end]),
        checksum=checksum,
        in_use=bool(flags & LOG_EVENT_BINLOG_IN_USE_F),
    )


class EventStream:
    """Iterate over the events of a binlog (``binlog=True``) or of a decompressed payload.

    Events larger than ``max_in_memory`` bytes come with a :class:`LargeBody`, the others
    with a memoryview of their body. With ``wanted``, only events of those types are yielded
    (all are still read, verified and counted).

    After iteration: ``valid_end`` is the offset just past the last complete event,
    ``truncated`` tells whether bytes followed it (a torn tail), ``event_count`` counts the
    complete events, ``first_ts``/``last_ts`` are the first and the highest timestamps and
    ``server_ids`` the server ids seen (in order). Mangled input raises :class:`FormatError`
    naming the offset.
    """

    def __init__(
        self,
        f: Readable | BinaryIO,
        name: str,
        *,
        binlog: bool = True,
        max_in_memory: int = MAX_IN_MEMORY,
        wanted: Iterable[int] | None = None,
    ) -> None:
        self._f: Readable = f
        self.want(wanted)
        self.name = name
        self._binlog = binlog
        self.checksum = False  # set from the format description; payloads have none
        self.max_in_memory = max_in_memory
        self.fde: FormatDescription | None = None
        self.valid_end = 0
        self.truncated = False
        self.event_count = 0
        self.bytes_read = 0
        self.first_ts = self.last_ts = 0
        self.server_ids: dict[int, None] = {}

    def want(self, wanted: Iterable[int] | None) -> None:
        """Yield only events of these types from now on (None: all)."""
        codes = set(range(256)) if wanted is None else set(wanted)
        self._wanted = bytes(code in codes for code in range(256))

    def read_raw(self, n: int) -> bytes:
        data = self._f.read(n)
        self.bytes_read += len(data)
        return data

    def _read_at_least(self, buf: bytes, pos: int, need: int) -> bytes:
        """Return ``buf[pos:]`` extended from the file to ``need`` bytes (fewer only at EOF)."""
        parts = [buf[pos:]]
        have = len(parts[0])
        read = self.read_raw
        while have < need:
            data = read(max(CHUNK, need - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _fail(self, offset: int, what: str) -> FormatError:
        return FormatError(f"{self.name}: {what} at offset {offset}")

    def _start(self) -> tuple[bytes, int]:
        """Check the magic and read the format description event; return (buffer, position)."""
        buf = self._read_at_least(b"", 0, 4 + HEADER_LEN)
        if buf[:2] == b"\x1f\x8b":
            raise self._fail(0, "not a binlog (gzip-compressed data)")
        if len(buf) < 4 or buf[:4] != MAGIC:
            raise self._fail(0, "not a binlog (bad magic)")
        if len(buf) < 4 + HEADER_LEN:
            raise self._fail(4, "file ends inside the format description event")
        code, size = buf[8], _U32.unpack_from(buf, 13)[0]
        if code != consts.FORMAT_DESCRIPTION:
            raise self._fail(4, f"first event is type {code}, not a format description")
        if size > 1 << 16 or size < HEADER_LEN:
            raise self._fail(4, f"format description event of impossible size {size}")
        buf = self._read_at_least(buf, 0, 4 + size)
        if len(buf) < 4 + size:
            raise self._fail(4, "file ends inside the format description event")
        self.fde = parse_fde(buf[4 : 4 + size], self.name)
        self.checksum = self.fde.checksum
        return buf, 4

    def __iter__(self) -> Generator[RawEvent, None, None]:  # noqa: PLR0915 (one hot loop)
        if self._binlog:
            buf, pos = self._start()  # the FDE, verified by parse_fde (in-use flag)
            ts, code, server_id, size, _next, flags = HEADER.unpack_from(buf, pos)
            body = memoryview(buf)[pos + HEADER_LEN : pos + size - self._csum()]
            self.event_count = 1
            self.valid_end = pos + size
            self.first_ts = self.last_ts = ts
            self.server_ids[server_id] = None
            yield (pos, ts, code, server_id, size, flags, body, None)
            pos += size
        else:
            buf, pos = b"", 0
        base = count = 0
        mv = memoryview(buf)
        have = len(buf)  # kept with buf: len() per event is measurable here
        unpack = HEADER.unpack_from
        crc_of = zlib.crc32
        csum = self._csum()
        min_size = HEADER_LEN + csum
        limit = self.max_in_memory
        wanted = self._wanted
        last_ts = self.last_ts
        sids = self.server_ids
        last_sid = -1
        try:
            while True:
                if have - pos < HEADER_LEN:
                    buf = self._read_at_least(buf, pos, HEADER_LEN)
                    base += pos
                    pos = 0
                    mv = memoryview(buf)
                    have = len(buf)
                    if have < HEADER_LEN:
                        self._tail(base, have)
                        return
                ts, code, server_id, size, _next, flags = unpack(buf, pos)
                if size < min_size:
                    raise self._fail(base + pos, f"invalid event size {size}")
                if size > limit:
                    self.valid_end = base + pos
                    self.last_ts = last_ts
                    large = yield from self._large(buf, pos, base, mv)
                    last_ts = self.last_ts
                    if large is None:
                        return
                    buf, pos, base = large, 0, self.valid_end
                    mv = memoryview(buf)
                    have = len(buf)
                    continue
                end = pos + size
                if end > have:
                    buf = self._read_at_least(buf, pos, size)
                    base += pos
                    pos = 0
                    end = size
                    mv = memoryview(buf)
                    have = len(buf)
                    if have < size:
                        self._tail(base, have)
                        return
                if csum and crc_of(mv[pos:end]) != CRC_RESIDUE:
                    raise self._fail(base + pos, f"checksum mismatch in event of type {code}")
                count += 1
                if ts > last_ts:  # noqa: PLR1730 (hot loop: max() costs a call)
                    last_ts = ts
                if server_id != last_sid:
                    last_sid = server_id
                    sids[server_id] = None
                if wanted[code]:
                    body = mv[pos + HEADER_LEN : end - csum]
                    yield (base + pos, ts, code, server_id, size, flags, body, None)
                pos = end
        finally:
            self.event_count += count
            self.valid_end = base + pos
            self.last_ts = last_ts

    def _csum(self) -> int:
        return CRC_LEN if self.checksum else 0

    def torn(self, events: Generator[RawEvent, None, None]) -> None:
        """A consumer's :meth:`LargeBody.read` raised :class:`TornTail` for this stream."""
        events.close()
        self._tail(self.valid_end, 1)

    def _tail(self, offset: int, leftover: int) -> None:
        """The input ended ``leftover`` bytes into the event at ``offset``."""
        if leftover:
            if not self._binlog:
                raise self._fail(offset, "compressed payload ends inside an event")
            self.truncated = True

    def _large(
        self, buf: bytes, pos: int, base: int, mv: memoryview
    ) -> Generator[RawEvent, None, bytes | None]:
        """Yield one event too large to buffer; return the bytes read past it (None at EOF)."""
        offset = base + pos
        ts, code, server_id, size, _next, flags = HEADER.unpack_from(buf, pos)
        csum = CRC_LEN if self.checksum else 0
        source = _Source(self, bytes(mv[pos:]))
        source.take(HEADER_LEN)
        body_size = size - HEADER_LEN - csum
        want = min(HEAD_SIZE, body_size)
        head = source.take(want)
        if len(head) < want:
            self._tail(offset, 1)
            return None
        body = LargeBody(head, body_size, source, self)
        self.last_ts = max(self.last_ts, ts)
        self.server_ids[server_id] = None
        try:
            if self._wanted[code]:
                yield (offset, ts, code, server_id, size, flags, head, body)
            while body.remaining:
                body.read(min(body.remaining, CHUNK))
        except TornTail:
            self._tail(offset, 1)
            return None
        crc = source.crc
        stored = source.take(csum)
        if len(stored) < csum:
            self._tail(offset, 1)
            return None
        if csum and crc != _U32.unpack(stored)[0]:
            raise self._fail(offset, f"checksum mismatch in event of type {code}")
        self.event_count += 1
        self.valid_end = offset + size
        return source.leftover()
