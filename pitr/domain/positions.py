"""Positions in the logs, as text and as comparable integers, for every engine.

- LSN: PostgreSQL's WAL location ``16/B374D848`` ↔ a 64-bit integer.
- WAL file names: ``TTTTTTTTXXXXXXXXYYYYYYYY`` (a segment), the same with ``.partial`` (the
  last, incomplete segment of a timeline that was left), ``TTTTTTTT.history`` (how a timeline
  branched off), ``TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`` (a backup history file); a
  timeline's stream is its ``TTTTTTTT``.
- Binlog keys: a binlog position (file ``mysql-bin.000042``, byte offset) as one integer,
  the file number above ``FILE_SHIFT`` bits of offset, so keys order like positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pitr.errors import FormatError, UsageError

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
_BACKUP = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.([0-9A-F]{8})\.backup$")


def parse_lsn(text: str) -> int:
    """``16/B374D848`` → integer; a usage error otherwise."""
    match = _LSN.match(text.strip())
    if not match:
        raise UsageError(f"not a WAL location (LSN): {text!r}", hint="example: 0/16533E18")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def stream_of(timeline: int) -> str:
    return f"{timeline:08X}"


def segment_name(timeline: int, start: int, segment_size: int) -> str:
    """PostgreSQL's WAL file name for the segment starting at LSN ``start``."""
    segno = start // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


WalKind = Literal["segment", "partial", "history", "backup"]


@dataclass(frozen=True)
class WalName:
    name: str
    kind: WalKind
    timeline: int
    log: int = 0
    seg: int = 0

    @property
    def stream(self) -> str:
        return stream_of(self.timeline)

    def start_lsn(self, segment_size: int) -> int:
        return (self.log << 32) + self.seg * segment_size


def parse_wal_name(name: str) -> WalName | None:
    """What a file in ``pg_wal`` is, by its name; None for anything else."""
    if m := _SEGMENT.match(name):
        kind: WalKind = "partial" if m.group(4) else "segment"
        return WalName(name, kind, int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16))
    if m := _HISTORY.match(name):
        return WalName(name, "history", int(m.group(1), 16))
    if m := _BACKUP.match(name):
        return WalName(
            name, "backup", int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)
        )
    return None


FILE_SHIFT = 40


def file_number(key: int) -> int:
    """The binlog file number of a key."""
    return key >> FILE_SHIFT


def offset_of(key: int) -> int:
    """The byte offset in its binlog of a key."""
    return key & ((1 << FILE_SHIFT) - 1)


def binlog_number(name: str) -> int:
    """``mysql-bin.000042`` → 42."""
    suffix = name.rsplit(".", 1)[-1]
    if not suffix.isdigit():
        raise FormatError(f"{name}: not a numbered binlog file name")
    return int(suffix)


def key_of(name: str, offset: int) -> int:
    """The key of byte ``offset`` of binlog ``name``: ordered like (file number, offset)."""
    return binlog_number(name) << FILE_SHIFT | offset
