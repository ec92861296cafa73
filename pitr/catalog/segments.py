"""The log segments of one stream, ordered by position, read lazily from compact columns.

A repository may hold years of logs: 100,000 segments and more. The summary keeps each
segment's fields column by column (times as integer microseconds); a ``SegmentRun`` builds
``LogSegment`` objects only for the segments a plan actually touches, and answers position
lookups by bisection over integer keys.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, overload

from pitr.catalog.layout import log_group
from pitr.catalog.model import LogSegment, RestorePoint
from pitr.domain.positions import format_lsn
from pitr.domain.timeutil import format_time, from_document, from_microseconds, to_microseconds
from pitr.storage.transfer import StoredObject, parse_codec

COLUMNS = (
    "name", "system", "log_kind", "start", "end", "start_key", "end_key", "commits", "last_key",
    "first_commit", "last_commit", "min_commit", "max_commit", "xid_min", "xid_max",
    "gtids_before", "gtids_after", "restore_points", "object_key", "object_size",
    "object_sha256", "object_raw_size", "compression", "object_raw_sha256", "archived_at",
    "created",
)  # fmt: skip
#: What a summary page stores, column by column. Left out, because they are derived or are
#: only in the index documents: the position texts, first/last commit (min/max are kept),
#: raw_sha256, an object key that follows the layout (null), other ``extra`` fields.
PAGE_COLUMNS = (
    "name", "system", "log_kind", "start_key", "end_key", "commits", "last_key", "min_commit",
    "max_commit", "xid_min", "xid_max", "gtids_before", "gtids_after", "restore_points",
    "object_key", "object_size", "object_sha256", "object_raw_size", "compression",
    "archived_at", "created",
)  # fmt: skip
#: Columns whose few distinct values are stored once per page, the column holding indices.
ENCODED = ("system", "log_kind", "compression")
#: Object name suffix by codec (``pitr.transfer.codec_of``): how the layout names a log object.
SUFFIX = {"zstd": ".zst", "none": "", "zstd+age": ".zst.age", "none+age": ".age"}
_FILE_MASK = (1 << 40) - 1  # binlog keys: file number << 40 | offset


def to_row(seg: LogSegment) -> list[Any]:
    """A segment as a summary row, in ``COLUMNS`` order."""
    obj = seg.object
    points = [r.to_dict() for r in seg.restore_points] or None
    us = to_microseconds
    archived = us(from_document(seg.extra.get("archived_at")))
    created = us(from_document(seg.extra.get("created")))
    return [
        seg.name, seg.system, seg.kind, seg.start, seg.end, seg.start_key, seg.end_key,
        seg.commits, seg.last_key, us(seg.first_commit), us(seg.last_commit),
        us(seg.min_commit), us(seg.max_commit), seg.xid_min, seg.xid_max, seg.gtids_before,
        seg.gtids_after, points, obj.key, obj.size, obj.sha256, obj.raw_size, obj.codec,
        obj.raw_sha256, archived, created,
    ]  # fmt: skip


def derived_key(stream_dir: str, name: str, codec: str) -> str:
    """Where the layout puts a log's data object (``Layout.log_object``)."""
    return f"{stream_dir}{log_group(name)}{name}{SUFFIX[codec]}"


def _position(kind: str, name: str, key: int) -> str:
    return f"{name}:{key & _FILE_MASK}" if kind == "binlog" else format_lsn(key)


def from_row(stream: str, row: Sequence[Any], key_prefix: str = "") -> LogSegment:
    (name, system, kind, start, end, start_key, end_key, commits, last_key, first, last, lo, hi,
     xid_min, xid_max, before, after, points, key, size, sha, raw_size, codec, raw_sha,
     archived, created) = row  # fmt: skip
    compression, encryption = parse_codec(codec)
    times = (("archived_at", archived), ("created", created))
    extra = {k: format_time(from_microseconds(v)) for k, v in times if v is not None}
    return LogSegment(
        name=name,
        stream=stream,
        system=system,
        kind=kind,
        start=start or _position(kind, name, start_key),
        end=end or _position(kind, name, end_key),
        start_key=int(start_key),
        end_key=int(end_key),
        object=StoredObject(
            key or derived_key(key_prefix, name, codec),
            int(size),
            sha,
            int(raw_size),
            compression,
            raw_sha,
            encryption,
        ),
        commits=int(commits),
        last_key=last_key,
        first_commit=from_microseconds(first),
        last_commit=from_microseconds(last),
        min_commit=from_microseconds(lo),
        max_commit=from_microseconds(hi),
        xid_min=xid_min,
        xid_max=xid_max,
        gtids_before=before,
        gtids_after=after,
        restore_points=tuple(RestorePoint.from_dict(p) for p in points or ()),
        extra=extra,
    )


Columns = dict[str, list[Any]]
"""A stream's segments column by column: every name of ``COLUMNS``, lists of equal length."""


def columns_of(rows: Iterable[Sequence[Any]]) -> Columns:
    """Rows in ``COLUMNS`` order, transposed."""
    rows = list(rows)
    return {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}


def rows_of(columns: Columns) -> list[tuple[Any, ...]]:
    """Columns back as rows, in ``COLUMNS`` order."""
    return list(zip(*(columns[c] for c in COLUMNS), strict=True))


def concat(parts: Sequence[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    return {c: list(itertools.chain.from_iterable(p[c] for p in parts)) for c in COLUMNS}


def to_columns(rows: Sequence[Sequence[Any]], key_prefix: str) -> dict[str, Any]:
    """Rows (``COLUMNS`` order) as a page's ``values`` and ``columns`` (see ``PAGE_COLUMNS``).
    Column-wise JSON parses three times faster than row-wise: planning reads whole pages."""
    where = {c: COLUMNS.index(c) for c in PAGE_COLUMNS}
    columns: dict[str, list[Any]] = {c: [r[where[c]] for r in rows] for c in PAGE_COLUMNS}
    values: dict[str, list[Any]] = {}
    for c in ENCODED:
        distinct = sorted(set(columns[c]), key=str)
        index = {v: i for i, v in enumerate(distinct)}
        values[c] = distinct
        columns[c] = [index[v] for v in columns[c]]
    columns["object_key"] = [
        None if key == derived_key(key_prefix, name, comp) else key
        for key, name, comp in zip(
            (r[where["object_key"]] for r in rows),
            (r[0] for r in rows),
            (r[where["compression"]] for r in rows),
            strict=True,
        )
    ]
    return {"values": values, "columns": columns}


def from_columns(doc: dict[str, Any]) -> Columns:
    """A page's columns, decoded; derivable fields are None (see ``from_row``)."""
    stored: dict[str, list[Any]] = doc["columns"]
    count = len(stored["name"])
    columns = {c: stored[c] if c in stored else [None] * count for c in COLUMNS}
    for c in ENCODED:
        table = doc["values"][c]
        columns[c] = [table[i] for i in columns[c]]
    if any(len(v) != count for v in columns.values()):
        raise ValueError("columns of different lengths")
    return columns


def _in_order(names: list[Any], starts: list[int]) -> bool:
    """Whether rows with these names and start keys are each name once, sorted by
    ``(start key, name)`` (checked in C: the usual case costs a few milliseconds)."""
    try:
        return all(map(operator.lt, names, names[1:])) and all(map(operator.le, starts, starts[1:]))
    except TypeError:
        return False


class SegmentRun(Sequence[LogSegment]):
    """The segments of one stream sorted by ``start_key``; one entry per segment name.

    Held column by column, as the pages store them: the planner scans a few columns of every
    segment and builds ``LogSegment`` objects only for the few it keeps."""

    def __init__(self, stream: str, columns: Columns, key_prefix: str = "") -> None:
        self.stream = stream
        self.key_prefix = key_prefix  # where the stream's objects are (their derived keys)
        names = columns["name"]
        starts = list(map(int, columns["start_key"]))
        if not _in_order(names, starts):
            # The same segment from a page and a document: the last wins (pages come first,
            # and a document is complete).
            last = {name: i for i, name in enumerate(names)}
            order = sorted(last.values(), key=lambda i: (starts[i], names[i]))
            columns = {c: [values[i] for i in order] for c, values in columns.items()}
            starts = [starts[i] for i in order]
        self._columns = columns
        self.start_keys = starts
        self.end_keys = list(map(int, columns["end_key"]))
        self._cache: dict[int, LogSegment] = {}
        self._running_max: list[int] | None = None
        self._with_commits: list[int] | None = None

    @classmethod
    def of(cls, stream: str, segments: Iterable[LogSegment]) -> SegmentRun:
        return cls(stream, columns_of(to_row(s) for s in segments))

    def __len__(self) -> int:
        return len(self.start_keys)

    @overload
    def __getitem__(self, index: int) -> LogSegment: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[LogSegment]: ...
    def __getitem__(self, index: int | slice) -> LogSegment | Sequence[LogSegment]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        seg = self._cache.get(index)
        if seg is None:
            row = [self._columns[c][index] for c in COLUMNS]
            seg = self._cache[index] = from_row(self.stream, row, self.key_prefix)
        return seg

    def __iter__(self) -> Iterator[LogSegment]:
        return (self[i] for i in range(len(self)))

    def column(self, name: str) -> list[Any]:
        """One raw column for every segment, without building ``LogSegment`` objects (times are
        integer microseconds since the epoch; object keys filled in where pages leave them
        out). The list is the run's own: read it, don't change it."""
        values = self._columns[name]
        if name == "object_key" and None in values:
            names, compression = self._columns["name"], self._columns["compression"]
            values = [
                v if v is not None else derived_key(self.key_prefix, n, c)
                for v, n, c in zip(values, names, compression, strict=True)
            ]
        return values

    def first_after(self, moment: datetime, *, inclusive: bool) -> int | None:
        """Index of the first segment holding a commit later than ``moment`` (or at it, when
        not ``inclusive``): where replay to a time target stops. Commit times are nearly but
        not strictly in log order, so this scans the running maximum."""
        limit = to_microseconds(moment)
        assert limit is not None
        if self._running_max is None:
            best = -1
            running = []
            for value in self.column("max_commit"):
                best = max(best, -1 if value is None else value)
                running.append(best)
            self._running_max = running
        i = bisect.bisect_right(self._running_max, limit if inclusive else limit - 1)
        return i if i < len(self) else None

    def with_commits(self) -> list[int]:
        """Indices of the segments holding a commit (or restore point), ascending; computed
        once from the ``max_commit`` column."""
        if self._with_commits is None:
            self._with_commits = [
                i for i, moment in enumerate(self.column("max_commit")) if moment is not None
            ]
        return self._with_commits

    def index_containing(self, key: int) -> int | None:
        """The segment whose ``[start_key, end_key)`` contains ``key``."""
        i = bisect.bisect_right(self.start_keys, key) - 1
        if i >= 0 and key < self.end_keys[i]:
            return i
        return None

    def first_index_at_or_after(self, key: int) -> int:
        return bisect.bisect_left(self.start_keys, key)
