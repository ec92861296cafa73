"""Mutated and truncated real binlogs: the parser raises FormatError or nothing, and never hangs."""

from __future__ import annotations

import io
import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitr.engines.mysql.binlog import index_binlog, iter_events
from pitr.errors import FormatError

V = Path(__file__).resolve().parent.parent / "vectors"
FILES = [
    V / "generated/mysql-bin.000004",  # MariaDB compressed events
    V / "generated/mysql-bin.000006",  # no checksums
    V / "generated/mysql-bin.000008.in-use",
    V / "rust_mysql_common/transaction_compression.000001",
    V / "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
    V / "rust_mysql_common/mariadb-bin.000001",
    V / "rust_mysql_common/mysql_type_bit.000001",
    V / "mysql-binlog-connector-rust/mysql-bin.000057",
    V / "mysql-binlog-connector-java/mysql-bin.aurora-padding",
    V / "go-mysql/tcb-eval002c-bin.003320",
    V / "wal-g/binlog_small_test",
]
DATA = [p.read_bytes() for p in FILES]


def _events(data: bytes) -> list[tuple[int, int]]:
    return [(e.offset, e.size) for e in iter_events(io.BytesIO(data)) if e.payload_offset is None]


EVENTS = [_events(d) for d in DATA]
CHECKSUMMED = [
    i for i, d in enumerate(DATA) if index_binlog(io.BytesIO(d), "x").checksum == "crc32"
]


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_everything(data: bytes) -> None:
    """Index and decode ``data``; FormatError is the only acceptable failure."""
    with time_limit(2.0):
        for run in (
            lambda: index_binlog(io.BytesIO(data), "fuzz"),
            lambda: index_binlog(io.BytesIO(data), "fuzz", max_in_memory=200),
            lambda: list(iter_events(io.BytesIO(data), "fuzz")),
        ):
            try:
                run()
            except FormatError as exc:
                assert "\n" not in str(exc) and str(exc).startswith("fuzz")


def _fix_crc(data: bytearray, offset: int, size: int) -> None:
    end = offset + size
    struct.pack_into("<I", data, end - 4, zlib.crc32(data[offset : end - 4]))


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(st.data())
def test_mutated_event_bodies(data: st.DataObject) -> None:
    """Mutations inside one event, with its CRC32 recomputed so the decoders see them."""
    i = data.draw(st.sampled_from(range(len(DATA))), label="file")
    buf = bytearray(DATA[i])
    offset, size = data.draw(st.sampled_from(EVENTS[i][1:]), label="event")
    body_end = offset + size - (4 if i in CHECKSUMMED else 0)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(offset + 8, body_end - 1), label="at")
        buf[at] = data.draw(st.integers(0, 255), label="byte")
    if i in CHECKSUMMED:
        _fix_crc(buf, offset, size)
    parse_everything(bytes(buf))


@FUZZ
@given(st.data())
def test_raw_mutations_and_truncations(data: st.DataObject) -> None:
    i = data.draw(st.sampled_from(range(len(DATA))), label="file")
    buf = bytearray(DATA[i])
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        at = data.draw(st.integers(0, len(buf) - 1), label="at")
        buf[at] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(0, len(buf)), label="cut")
    parse_everything(bytes(buf[:cut]))


@settings(max_examples=40, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_magic(tail: bytes) -> None:
    parse_everything(b"\xfebin" + DATA[1][4:130] + tail)
