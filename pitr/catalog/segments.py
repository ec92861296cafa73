"""The log segments of one stream, ordered by position, read lazily from compact rows.

A repository may hold years of logs: 100,000 segments and more. The summary keeps each
segment as a compact row (times as integer microseconds); a ``SegmentRun`` parses only the
rows a plan actually touches into ``LogSegment`` objects, and answers position lookups by
bisection over integer keys.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from pitr.catalog.model import LogSegment, RestorePoint
from pitr.transfer import StoredObject

COLUMNS = (
    "name", "system", "log_kind", "start", "end", "start_key", "end_key", "commits", "last_key",
    "first_commit", "last_commit", "min_commit", "max_commit", "xid_min", "xid_max",
    "gtids_before", "gtids_after", "restore_points", "object_key", "object_size",
    "object_sha256", "object_raw_size", "compression", "object_raw_sha256", "extra",
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_START_KEY = COLUMNS.index("start_key")
_END_KEY = COLUMNS.index("end_key")
_NAME_OF = operator.itemgetter(0)
_START_OF = operator.itemgetter(_START_KEY)
_END_OF = operator.itemgetter(_END_KEY)


def _us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // timedelta(microseconds=1)


def _dt(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def to_row(seg: LogSegment) -> list[Any]:
    """A segment as a summary row, in ``COLUMNS`` order."""
    obj = seg.object
    points = [r.to_dict() for r in seg.restore_points] or None
    return [
        seg.name, seg.system, seg.kind, seg.start, seg.end, seg.start_key, seg.end_key,
        seg.commits, seg.last_key, _us(seg.first_commit), _us(seg.last_commit), _us(seg.min_commit),
        _us(seg.max_commit), seg.xid_min, seg.xid_max, seg.gtids_before, seg.gtids_after,
        points, obj.key, obj.size, obj.sha256, obj.raw_size, obj.compression, obj.raw_sha256,
        dict(seg.extra) or None,
    ]  # fmt: skip


def from_row(stream: str, row: Sequence[Any]) -> LogSegment:
    (name, system, kind, start, end, start_key, end_key, commits, last_key, first, last, lo, hi,
     xid_min, xid_max, before, after, points, key, size, sha, raw_size, compression, raw_sha,
     extra) = row  # fmt: skip
    return LogSegment(
        name=name,
        stream=stream,
        system=system,
        kind=kind,
        start=start,
        end=end,
        start_key=int(start_key),
        end_key=int(end_key),
        object=StoredObject(key, int(size), sha, int(raw_size), compression, raw_sha),
        commits=int(commits),
        last_key=last_key,
        first_commit=_dt(first),
        last_commit=_dt(last),
        min_commit=_dt(lo),
        max_commit=_dt(hi),
        xid_min=xid_min,
        xid_max=xid_max,
        gtids_before=before,
        gtids_after=after,
        restore_points=tuple(RestorePoint.from_dict(p) for p in points or ()),
        extra=extra or {},
    )


def _in_order(names: list[Any], starts: list[int]) -> bool:
    """Whether rows with these names and start keys are each name once, sorted by
    ``(start key, name)`` (checked in C: the usual case costs a few milliseconds)."""
    try:
        return all(map(operator.lt, names, names[1:])) and all(map(operator.le, starts, starts[1:]))
    except TypeError:
        return False


class SegmentRun(Sequence[LogSegment]):
    """The segments of one stream sorted by ``start_key``; one entry per segment name."""

    def __init__(self, stream: str, rows: Iterable[Sequence[Any]]) -> None:
        self.stream = stream
        given = list(rows)
        names = list(map(_NAME_OF, given))
        starts = list(map(int, map(_START_OF, given)))
        if _in_order(names, starts):
            # Already in order, each name once (pages are written sorted): nothing to do.
            self._rows = given
            self.start_keys = starts
        else:
            unique = {row[0]: row for row in given}  # the same segment from a page and a document
            self._rows = sorted(unique.values(), key=lambda r: (int(r[_START_KEY]), r[0]))
            self.start_keys = [int(r[_START_KEY]) for r in self._rows]
        self.end_keys = list(map(int, map(_END_OF, self._rows)))
        self._cache: dict[int, LogSegment] = {}
        self._running_max: list[int] | None = None

    @classmethod
    def of(cls, stream: str, segments: Iterable[LogSegment]) -> SegmentRun:
        return cls(stream, (to_row(s) for s in segments))

    def __len__(self) -> int:
        return len(self._rows)

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
            seg = self._cache[index] = from_row(self.stream, self._rows[index])
        return seg

    def __iter__(self) -> Iterator[LogSegment]:
        return (self[i] for i in range(len(self)))

    def rows(self) -> list[Sequence[Any]]:
        return list(self._rows)

    def column(self, name: str) -> list[Any]:
        """One raw column for every segment, without building ``LogSegment`` objects (times are
        integer microseconds since the epoch)."""
        i = COLUMNS.index(name)
        return [r[i] for r in self._rows]

    def first_after(self, moment: datetime, *, inclusive: bool) -> int | None:
        """Index of the first segment holding a commit later than ``moment`` (or at it, when
        not ``inclusive``): where replay to a time target stops. Commit times are nearly but
        not strictly in log order, so this scans the running maximum."""
        limit = _us(moment)
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

    def index_containing(self, key: int) -> int | None:
        """The segment whose ``[start_key, end_key)`` contains ``key``."""
        i = bisect.bisect_right(self.start_keys, key) - 1
        if i >= 0 and key < self.end_keys[i]:
            return i
        return None

    def first_index_at_or_after(self, key: int) -> int:
        return bisect.bisect_left(self.start_keys, key)

    def without(self, names: frozenset[str]) -> SegmentRun:
        return SegmentRun(self.stream, (r for r in self._rows if r[0] not in names))
