"""PostgreSQL WAL files by content: page headers (checked against the segment's name, parsed
in ``pitr.domain.positions``) and timeline history files."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pitr.domain.positions import WalName, parse_lsn
from pitr.errors import FormatError, UsageError

#: XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (pad), sysid, seg_size, blcksz
_LONG_HEADER = struct.Struct("<HHIQI4xQII")
XLP_LONG_HEADER = 0x0002
WAL_MAGIC = {0xD118: 18, 0xD116: 17, 0xD113: 16, 0xD110: 15, 0xD10D: 14, 0xD106: 13}


@dataclass(frozen=True)
class PageHeader:
    """The long header that starts every WAL segment."""

    version: int
    timeline: int
    pageaddr: int
    system_id: int
    segment_size: int
    block_size: int


def read_long_header(data: bytes, name: str) -> PageHeader:
    """Parse the first page header of a segment; ``FormatError`` if it is not WAL."""
    if len(data) < _LONG_HEADER.size:
        raise FormatError(f"{name}: too short to be a WAL segment ({len(data)} bytes)")
    magic, info, tli, pageaddr, _rem, sysid, seg_size, blcksz = _LONG_HEADER.unpack_from(data)
    if magic not in WAL_MAGIC:
        if max(WAL_MAGIC) < magic <= 0xD1FF:
            raise FormatError(
                f"{name}: WAL of a PostgreSQL newer than {max(WAL_MAGIC.values())} (page magic "
                f"0x{magic:04X}), which this pitr does not support",
                hint="install a pitr release that supports it; until then no WAL is "
                "archived and pg_wal grows",
            )
        raise FormatError(f"{name}: not a PostgreSQL WAL segment (page magic 0x{magic:04X})")
    if not info & XLP_LONG_HEADER:
        raise FormatError(f"{name}: the first page has no long header")
    if seg_size & (seg_size - 1) or not 1 << 20 <= seg_size <= 1 << 30 or blcksz & (blcksz - 1):
        raise FormatError(f"{name}: implausible segment/block size ({seg_size}/{blcksz})")
    return PageHeader(WAL_MAGIC[magic], tli, pageaddr, sysid, seg_size, blcksz)


def check_segment(header: PageHeader, wal: WalName) -> None:
    """The header must be the one of the segment the name says: its start, and a timeline no
    newer than the name's (the first segment of a new timeline is a copy of its parent's, and
    its page headers keep the parent's timeline)."""
    start = wal.start_lsn(header.segment_size)
    if header.timeline > wal.timeline or header.pageaddr != start:
        raise FormatError(
            f"{wal.name}: its header says timeline {header.timeline} at "
            f"{header.pageaddr >> 32:X}/{header.pageaddr & 0xFFFFFFFF:X}, not what the name says"
        )


@dataclass(frozen=True)
class HistoryEntry:
    parent: int
    switch_lsn: int
    switch_text: str
    reason: str


def parse_history(text: str, name: str) -> list[HistoryEntry]:
    """Lines ``parentTLI<TAB>switchpoint<TAB>reason``; comments and blank lines ignored."""
    entries: list[HistoryEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 2)
        try:
            parent = int(fields[0])
            lsn = parse_lsn(fields[1])
        except (IndexError, ValueError, UsageError):
            raise FormatError(f"{name}: line {number} is not a timeline history entry") from None
        if entries and (parent <= entries[-1].parent or lsn < entries[-1].switch_lsn):
            raise FormatError(f"{name}: line {number}: timelines or switch points go backwards")
        entries.append(HistoryEntry(parent, lsn, fields[1], fields[2] if len(fields) > 2 else ""))
    return entries
