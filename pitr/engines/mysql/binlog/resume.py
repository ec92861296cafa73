"""Indexing a growing binlog from where its last index ended (:func:`index_continued`).

``archive --follow`` ships the open binlog every few seconds: indexing the whole file each
time would read it again and again. Here only the bytes after the last indexed transaction are
read, behind the file's head events (its format description and starting GTID state, which the
reader needs for checksums and event layouts): the spliced stream is indexed as one binlog,
then its offsets are moved to the file's and the GTID state continues from the earlier one.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from pitr.domain.gtid import MariaGtid, MariaGtidPosition, MysqlGtid, MysqlGtidSet
from pitr.engines.mysql.binlog.index import index_binlog, index_binlog_file
from pitr.engines.mysql.binlog.model import BinlogIndex, Transaction


class _Spliced:
    """The file's first ``head`` bytes, then its bytes from ``resume`` on."""

    def __init__(self, fh: BinaryIO, head: int, resume: int) -> None:
        self._fh = fh
        self._head_left = head
        self._resume = resume

    def read(self, n: int = -1, /) -> bytes:
        if self._head_left > 0:
            data = self._fh.read(self._head_left if n < 0 else min(n, self._head_left))
            self._head_left -= len(data)
            if self._head_left == 0:
                self._fh.seek(self._resume)
            return data
        return self._fh.read(n)


def index_continued(path: Path, before: BinlogIndex) -> BinlogIndex:
    """The index of ``path`` now, given ``before``, the index of its first
    ``before.valid_end`` bytes, which end with its last complete transaction (its
    ``event_count`` taken as the events before that end). Reads the whole file when ``before``
    cannot be continued (no transaction, no GTID state, a file shorter than it)."""
    txns = before.transactions
    if (not txns or txns[-1].end != before.valid_end or before.gtids_after is None
            or path.stat().st_size < before.valid_end):  # fmt: skip
        return index_binlog_file(path)
    head, done = txns[0].start, before.valid_end
    with path.open("rb") as fh:
        head_events = index_binlog(io.BytesIO(fh.read(head)), path.name).event_count
        fh.seek(0)
        new = index_binlog(_Spliced(fh, head, done), path.name)
    shift = done - head
    moved = tuple(replace(t, start=t.start + shift, end=t.end + shift) for t in new.transactions)
    times = [t for t in (before.last_time, new.last_time) if t is not None]
    return replace(
        new,
        size=new.size + shift,
        valid_end=new.valid_end + shift,
        server_ids=tuple(dict.fromkeys((*before.server_ids, *new.server_ids))),
        first_time=before.first_time,
        last_time=max(times) if times else None,
        gtids_before=before.gtids_before,
        gtids_after=_continue(before.flavor, before.gtids_after, moved),
        event_count=before.event_count + new.event_count - head_events,
        transactions=(*txns, *moved),
    )


def _continue(flavor: str, state: str, txns: tuple[Transaction, ...]) -> str:
    """``state`` advanced by the GTIDs of ``txns``."""
    if flavor == "mariadb":
        pos = MariaGtidPosition.parse(state)
        for t in txns:
            if t.gtid is not None:
                pos = pos.advance(MariaGtid.parse(t.gtid))
        return str(pos)
    gset = MysqlGtidSet.parse(state)
    for t in txns:
        if t.gtid is not None:
            gset = gset.add(MysqlGtid.parse(t.gtid))
    return str(gset)
