"""``pitr inspect``: describe local binlog, WAL and timeline-history files without a server.

What a file is comes from its content, not its name: the binlog magic ``\\xfebin``, a WAL
page magic with a long page header (the first page of a segment), or text that reads as a
timeline history. A name that says otherwise (a WAL segment named for another segment or
timeline, history text under a segment's name) is an error, like anything unreadable:
:class:`~pitr.errors.FormatError` (exit 3) with one line naming the file.

Each file is described by what its kind knows (:data:`Inspected`): a binlog by its index
(GTID state, transactions), a WAL segment by its summary (timeline, LSNs, restore points,
where valid WAL ends), a timeline history by its entries; ``pitr.cli.documents.inspect``
makes docs/json.md's ``inspect --json`` entries of them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from pitr.domain.positions import parse_wal_name
from pitr.engines.mysql.binlog import index_binlog_file
from pitr.engines.mysql.binlog.model import BinlogIndex
from pitr.engines.postgresql.walfile import HistoryEntry, check_segment, parse_history
from pitr.engines.postgresql.walreader import (
    PAGE_MAGIC,
    SegmentSummary,
    WalReader,
    summarize_segment,
)
from pitr.errors import FormatError, UsageError

BINLOG_MAGIC = b"\xfebin"
#: Timeline history files are a line per ancestor; anything this big is something else.
HISTORY_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class BinlogFile:
    """A MariaDB or MySQL binlog."""

    kind: ClassVar[str] = "binlog"
    path: str
    index: BinlogIndex


@dataclass(frozen=True)
class WalFile:
    """A PostgreSQL WAL segment. ``timeline`` is its name's, else its pages'; ``name_matches``
    is True when it is named as a segment (the pages agree: a mismatch is an error), None when
    its name is not a WAL name."""

    kind: ClassVar[str] = "wal"
    path: str
    segment: SegmentSummary
    timeline: int
    name_matches: bool | None


@dataclass(frozen=True)
class HistoryFile:
    """A PostgreSQL timeline history; ``timeline`` from its name (None when not named so)."""

    kind: ClassVar[str] = "timeline-history"
    path: str
    timeline: int | None
    entries: tuple[HistoryEntry, ...]


#: One file ``pitr inspect`` described.
Inspected: TypeAlias = BinlogFile | WalFile | HistoryFile


def inspect_files(paths: Iterable[str]) -> list[Inspected]:
    """One :func:`inspect_file` result per path, in order."""
    return [inspect_file(path) for path in paths]


def inspect_file(path: str) -> Inspected:
    """Describe one file; :class:`FormatError` if it is not what it is or claims to be."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if head == BINLOG_MAGIC:
        return BinlogFile(path, index_binlog_file(path))
    if int.from_bytes(head[:2], "little") in PAGE_MAGIC:
        return _wal(path)
    return _history(path)


def _wal(path: str) -> WalFile:
    with open(path, "rb") as f:
        header = WalReader(f, path).header
    if header is None:
        raise FormatError(f"{path}: WAL pages, but not a segment (no long page header)")
    wal = parse_wal_name(os.path.basename(path))
    if wal is not None:
        if wal.kind not in ("segment", "partial"):
            raise FormatError(f"{path}: named like a {wal.kind} file, but it is a WAL segment")
        # A timeline's first segment begins with its parent's pages, copied at the switch,
        # and their headers keep the parent's timeline: only a later timeline is wrong.
        check_segment(dataclasses.replace(header, timeline=max(header.timeline, wal.timeline)), wal)
    summary = summarize_segment(path)
    if wal is None:
        return WalFile(path, summary, summary.header.timeline, None)
    return WalFile(path, summary, wal.timeline, True)  # the name's, whichever the pages say


def _history(path: str) -> HistoryFile:
    not_any = FormatError(f"{path}: not a binlog, WAL segment or timeline history file")
    wal = parse_wal_name(os.path.basename(path))
    named = wal is not None and wal.kind == "history"
    with open(path, "rb") as f:
        raw = f.read(HISTORY_MAX_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_any from None
    if len(raw) > HISTORY_MAX_BYTES or "\0" in text:
        raise not_any
    try:
        entries = parse_history(text, path)
    except FormatError:
        if named:
            raise
        raise not_any from None
    if not entries:
        raise FormatError(f"{path}: a timeline history without entries") if named else not_any
    if wal is not None and not named:
        raise FormatError(f"{path}: named like a WAL {wal.kind}, but it is a timeline history")
    timeline = wal.timeline if wal is not None else None
    if timeline is not None and entries[-1].parent >= timeline:
        raise FormatError(
            f"{path}: timeline {timeline}'s history names timeline {entries[-1].parent} as a parent"
        )
    return HistoryFile(path, timeline, tuple(entries))
