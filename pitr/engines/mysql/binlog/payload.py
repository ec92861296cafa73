"""MySQL TRANSACTION_PAYLOAD events (binlog_transaction_compression): the inner events.

The payload is decompressed as a stream (zstandard) and cut into events by an
:class:`EventStream`, so a huge compressed transaction never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zstandard

from pitr.engines.mysql.binlog.events import DECODE_ERRORS, payload_header
from pitr.engines.mysql.binlog.reader import EventStream, LargeBody, RawEvent, Readable
from pitr.errors import FormatError

ZSTD = 0
NONE = 255


class _Chain:
    """Reads ``first`` and then the rest of a large body."""

    def __init__(self, first: bytes, body: LargeBody) -> None:
        self._first = first
        self._body = body

    def read(self, n: int = -1, /) -> bytes:
        if self._first:
            out, self._first = self._first[:n], self._first[n:]
            return out
        return self._body.read(n)


def payload_events(
    head: memoryview | bytes,
    large: LargeBody | None,
    name: str,
    offset: int,
    limit: int,
    wanted: Iterable[int] | None = None,
) -> Iterator[RawEvent]:
    """The events inside the payload event at ``offset`` (``head``/``large`` as in
    :data:`RawEvent`; ``limit`` and ``wanted`` as for :class:`EventStream`); their offsets
    count from the start of the payload data."""
    total = large.size if large is not None else len(head)
    try:
        header = payload_header(head, total)
    except DECODE_ERRORS as exc:
        raise FormatError(f"{name}: malformed transaction payload at offset {offset}") from exc
    source: Readable
    if large is not None:
        source = _Chain(bytes(head[header.header_len :]), large)
    else:
        source = _BytesReader(head[header.header_len :])
    if header.compression == ZSTD:
        zstd = zstandard.ZstdDecompressor()
        source = zstd.stream_reader(source, read_across_frames=True)  # type: ignore[arg-type]
    elif header.compression != NONE:
        raise FormatError(
            f"{name}: unknown payload compression {header.compression} at offset {offset}"
        )
    where = f"{name} (payload at {offset})"
    inner = EventStream(source, where, binlog=False, max_in_memory=limit, wanted=wanted)
    try:
        yield from inner
    except zstandard.ZstdError as exc:
        raise FormatError(f"{name}: corrupt zstd payload at offset {offset}: {exc}") from exc


class _BytesReader:
    def __init__(self, data: memoryview | bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int = -1, /) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out = bytes(self._data[self._pos : end])
        self._pos += len(out)
        return out
