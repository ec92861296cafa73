"""``pitr inspect``: describe local binlog, WAL and timeline-history files without a server.

What a file is comes from its content, not its name: the binlog magic ``\\xfebin``, a WAL
page magic with a long page header (the first page of a segment), or text that reads as a
timeline history. A name that says otherwise (a WAL segment named for another segment or
timeline, history text under a segment's name) is an error, like anything unreadable:
:class:`~pitr.errors.FormatError` (exit 3) with one line naming the file.

The entries follow docs/json.md's ``inspect --json`` shape (``path``, ``kind``,
``server_version``, ``checksum``, ``first_time``, ``last_time``, ``in_use``, ``truncated``,
``transactions``), with what each kind adds: GTID state for binlogs; timeline, LSNs, restore
points and where valid WAL ends for segments; the entries of a timeline history.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from pitr.domain.positions import format_lsn, parse_wal_name
from pitr.engines.mysql.binlog import index_binlog_file
from pitr.engines.postgresql.walfile import check_segment, parse_history
from pitr.engines.postgresql.walreader import PAGE_MAGIC, WalReader, summarize_segment
from pitr.errors import FormatError, UsageError

BINLOG_MAGIC = b"\xfebin"
#: Timeline history files are a line per ancestor; anything this big is something else.
HISTORY_MAX_BYTES = 1 << 20


def inspect_files(paths: Iterable[str]) -> dict[str, Any]:
    """``{"files": [...]}``, one :func:`inspect_file` entry per path, in order."""
    return {"files": [inspect_file(path) for path in paths]}


def inspect_file(path: str) -> dict[str, Any]:
    """Describe one file; :class:`FormatError` if it is not what it is or claims to be."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if head == BINLOG_MAGIC:
        entry = _binlog(path)
    elif int.from_bytes(head[:2], "little") in PAGE_MAGIC:
        entry = _wal(path)
    else:
        entry = _history(path)
    return {"path": path, **entry}


def _binlog(path: str) -> dict[str, Any]:
    index = index_binlog_file(path)
    entry = index.to_dict()
    entry["kind"] = "binlog"
    for transaction in entry["transactions"]:
        transaction["position"] = transaction["start"]
    return entry


def _wal(path: str) -> dict[str, Any]:
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
    entry = summarize_segment(path)
    if wal is not None:  # the name's timeline, whichever the pages say
        entry["timeline"] = wal.timeline
    return {**entry, "name_matches": True if wal is not None else None}


def _history(path: str) -> dict[str, Any]:
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
    return {
        "kind": "timeline-history",
        "timeline": timeline,
        "entries": [
            {
                "parent_timeline": e.parent,
                "switch_lsn": format_lsn(e.switch_lsn),
                "reason": e.reason,
            }
            for e in entries
        ],
    }
