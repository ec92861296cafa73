"""WAL file names and segment headers, on real PostgreSQL 15 segments."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from pitr.domain.positions import parse_wal_name
from pitr.engines.postgresql.walfile import check_segment, parse_history, read_long_header
from pitr.errors import FormatError

VECTORS = Path(__file__).parents[1] / "vectors" / "wal" / "generated"


def header_of(name: str) -> bytes:
    with (VECTORS / f"{name}.zst").open("rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read(64)


def test_names() -> None:
    seg = parse_wal_name("00000002000000010000003F")
    assert seg is not None and (seg.kind, seg.timeline, seg.log, seg.seg) == ("segment", 2, 1, 63)
    assert seg.start_lsn(16 * 1024 * 1024) == (1 << 32) + 63 * 16 * 1024 * 1024
    partial = parse_wal_name("00000001000000000000000A.partial")
    assert partial is not None and partial.kind == "partial"
    assert parse_wal_name("0000000A.history") == parse_wal_name("0000000A.history")
    assert parse_wal_name("000000010000000000000002.00000028.backup") is not None
    for bad in ["00000001000000000000000", "0000000100000000000000zz", "x.history", "pg_wal"]:
        assert parse_wal_name(bad) is None


def test_first_segment_of_a_new_timeline_keeps_its_parents_header() -> None:
    name = "000000020000000000000004"
    header = read_long_header(header_of(name), name)
    assert header.timeline == 1  # copied from timeline 1 at the switch
    wal = parse_wal_name(name)
    assert wal is not None
    check_segment(header, wal)  # accepted: the timeline is not newer than the name's


def test_a_segment_under_another_name_is_refused() -> None:
    name = "000000020000000000000004"
    header = read_long_header(header_of(name), name)
    for wrong in ["000000020000000000000005", "000000010000000000000003"]:
        wal = parse_wal_name(wrong)
        assert wal is not None
        with pytest.raises(FormatError, match="not what the name says"):
            check_segment(header, wal)


def test_not_wal() -> None:
    with pytest.raises(FormatError, match="not a PostgreSQL WAL segment"):
        read_long_header(b"\x00" * 64, "zeros")
    with pytest.raises(FormatError, match="too short"):
        read_long_header(b"\x10\xd1", "short")


def test_history_files() -> None:
    entries = parse_history("1\t0/4000060\tno recovery target specified\n\n2\t0/5000000\tx\n", "h")
    assert [(e.parent, e.switch_text) for e in entries] == [(1, "0/4000060"), (2, "0/5000000")]
    with pytest.raises(FormatError, match="line 1"):
        parse_history("one\t0/1\treason\n", "h")
    with pytest.raises(FormatError, match="go backwards"):
        parse_history("2\t0/5000000\tx\n1\t0/4000000\ty\n", "h")
