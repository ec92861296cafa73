"""TABLE_MAP decoding and row counting for WRITE/UPDATE/DELETE_ROWS events (v1, v2, MariaDB).

Counting rows means walking the row images: each is a NULL bitmap followed by the values of
the present, non-NULL columns, whose sizes follow from the column types and the table map's
metadata. A column whose size cannot be computed makes the count unknown (None), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from pitr.engines.mysql.binlog.events import Buffer, Malformed, maria_uncompress, packed_int

# A column's size in a row image: >= 0 a fixed size, PREFIX_n a value preceded by an n-byte
# little-endian length, None unknown.
PREFIX_1, PREFIX_2, PREFIX_3, PREFIX_4 = -1, -2, -3, -4
ColumnSize = int | None

_FIXED = {1: 1, 2: 2, 3: 4, 5: 8, 6: 0, 7: 4, 8: 8, 9: 3, 10: 3, 11: 3, 12: 8, 13: 1, 14: 3}
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
# Metadata bytes per type in TABLE_MAP (types not listed have none).
_META_LEN = {
    4: 1, 5: 1, 15: 2, 16: 2, 17: 1, 18: 1, 19: 1, 242: 1, 245: 1, 246: 2, 247: 2, 248: 2,
    249: 1, 250: 1, 251: 1, 252: 1, 253: 2, 254: 2, 255: 1,
}  # fmt: skip
_TYPED_ARRAY = 20


def _decimal_size(precision: int, scale: int) -> int:
    intg = precision - scale
    return intg // 9 * 4 + _DIG2BYTES[intg % 9] + scale // 9 * 4 + _DIG2BYTES[scale % 9]


def _column_size(code: int, meta: Buffer) -> ColumnSize:
    fixed = _FIXED.get(code)
    if fixed is not None:
        return fixed
    if code == 4:  # FLOAT: metadata is its size
        return meta[0]
    if code in (15, 253):  # VARCHAR, VAR_STRING: metadata is the maximum length in bytes
        return PREFIX_1 if (meta[0] | meta[1] << 8) < 256 else PREFIX_2
    if code == 16:  # BIT: bits % 8, bytes
        return meta[1] + (1 if meta[0] else 0)
    if code in (17, 18, 19):  # TIMESTAMP2, DATETIME2, TIME2 with fractional precision
        if meta[0] > 6:
            return None
        return (4, 5, 3)[code - 17] + (meta[0] + 1) // 2
    if code == 246:  # NEWDECIMAL: precision, scale
        if meta[1] > meta[0] or meta[0] > 65:
            return None
        return _decimal_size(meta[0], meta[1])
    if code in (247, 248):  # ENUM, SET
        return meta[1]
    if code in (242, 245, 249, 250, 251, 252, 255):  # VECTOR, JSON, BLOBs, GEOMETRY
        return -meta[0] if 1 <= meta[0] <= 4 else None
    if code == 254:  # STRING: real type (ENUM/SET) or a length split over both bytes
        if meta[0] in (247, 248):
            return meta[1]
        max_len = (((meta[0] << 4) & 0x300) ^ 0x300) + meta[1]
        return PREFIX_1 if max_len < 256 else PREFIX_2
    return None


class Plan(NamedTuple):
    """How to step over one row image: the present columns' sizes, the NULL bitmap's length
    and the mask of its bits that count (a server may set the others), and, for images
    without NULLs, (fixed bytes, length-prefix bytes) steps. When every length
    prefix is one byte (CHAR, VARCHAR up to 255 bytes...), also ``runs``: the fixed bytes
    before each prefix (``tail``: after the last one), which skip without a branch per step."""

    sizes: tuple[int, ...]
    null_bytes: int
    null_mask: int
    steps: tuple[tuple[int, int], ...]
    runs: tuple[int, ...] | None
    tail: int


def _plan(sizes: tuple[int, ...]) -> Plan:
    steps = []
    fixed = 0
    for size in sizes:
        if size >= 0:
            fixed += size
        else:
            steps.append((fixed, -size))
            fixed = 0
    steps.append((fixed, 0))
    runs = None
    if all(prefix == 1 for _fixed, prefix in steps[:-1]):
        runs = tuple(fixed for fixed, _prefix in steps[:-1])
    return Plan(sizes, (len(sizes) + 7) >> 3, (1 << len(sizes)) - 1, tuple(steps), runs, fixed)


_PLANS_LIMIT = 64  # entries of each of a table map's memos below


@dataclass(slots=True)
class TableMap:
    """A TABLE_MAP event: which table a table id stands for, and its columns' sizes.

    Its memos hold what rows events' column bitmaps give: ``plans`` the plan of a bitmap,
    ``pairs`` those of an UPDATE event's two bitmaps (a server repeats the same ones).
    """

    table_id: int
    schema: str
    table: str
    sizes: tuple[ColumnSize, ...]
    name: str = field(init=False)  # "schema.table"
    plans: dict[bytes, Plan | None] = field(default_factory=dict)
    pairs: dict[bytes, tuple[Plan | None, Plan | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = f"{self.schema}.{self.table}"

    def plan(self, present: bytes) -> Plan | None:
        """The plan for the columns a ``present`` bitmap selects (None if a size is unknown)."""
        try:
            return self.plans[present]
        except KeyError:  # a try costs nothing when the bitmap is known, as it nearly always is
            pass
        cols = [s for i, s in enumerate(self.sizes) if present[i >> 3] >> (i & 7) & 1]
        result = None
        if None not in cols:
            sizes = tuple(s for s in cols if s is not None)
            result = _plan(sizes)
        if len(self.plans) < _PLANS_LIMIT:
            self.plans[present] = result
        return result

    def pair_plans(self, bitmaps: bytes, nbm: int) -> tuple[Plan | None, Plan | None]:
        """:meth:`plan` of an UPDATE rows event's two bitmaps of ``nbm`` bytes each."""
        pair = self.pairs.get(bitmaps)
        if pair is None:
            pair = (self.plan(bitmaps[:nbm]), self.plan(bitmaps[nbm:]))
            if len(self.pairs) < _PLANS_LIMIT:
                self.pairs[bitmaps] = pair
        return pair


def table_id_len(post_len: int) -> int:
    """Bytes of the table id of a TABLE_MAP or rows event (6; 4 in post-headers of 6 bytes)."""
    return 4 if post_len == 6 else 6


def table_id_at(body: Buffer, post_len: int) -> int:
    """Table id of a TABLE_MAP or rows event."""
    return int.from_bytes(body[0 : table_id_len(post_len)], "little")


def table_map(body: Buffer, post_len: int) -> TableMap:
    pos = post_len
    db_len = body[pos]
    schema = bytes(body[pos + 1 : pos + 1 + db_len]).decode("utf-8", "replace")
    pos += 1 + db_len + 1
    tbl_len = body[pos]
    table = bytes(body[pos + 1 : pos + 1 + tbl_len]).decode("utf-8", "replace")
    pos += 1 + tbl_len + 1
    ncols, pos = packed_int(body, pos)
    types = bytes(body[pos : pos + ncols])
    if len(types) != ncols:
        raise Malformed("table map column types cut short")
    pos += ncols
    meta_len, pos = packed_int(body, pos)
    meta = body[pos : pos + meta_len]
    if len(meta) != meta_len:
        raise Malformed("table map metadata cut short")
    sizes: list[ColumnSize] = []
    mpos = 0
    for code in types:
        if code == _TYPED_ARRAY:  # MySQL: element type, then that type's metadata
            sizes.append(None)
            mpos += 1 + _META_LEN.get(meta[mpos], 0)
            continue
        n = _META_LEN.get(code, 0)
        if mpos + n > meta_len:
            raise Malformed("table map metadata shorter than its column types need")
        sizes.append(_column_size(code, meta[mpos : mpos + n]))
        mpos += n
    return TableMap(table_id_at(body, post_len), schema, table, tuple(sizes))


def _skip_image(data: Buffer, pos: int, plan: Plan, end: int) -> int:
    """Position just past one row image, or -1 when it overruns ``end``.

    (Or IndexError: a NULL bitmap or a length prefix past the data, which an image that
    overruns ``end`` may also end with; count_rows takes both to mean "unknown".)
    """
    sizes, nb, mask, steps, runs, tail = plan
    # up to 8 columns (the common case): one byte, without a slice and a call
    nulls = data[pos] if nb == 1 else int.from_bytes(data[pos : pos + nb], "little")
    pos += nb
    if not nulls & mask:
        if runs is not None:  # short strings only (common): no branch per column
            for fixed in runs:
                pos += fixed + 1 + data[pos + fixed]
            pos += tail
            return pos if pos <= end else -1
        for fixed, prefix in steps:
            pos += fixed
            if prefix == 1:
                pos += 1 + data[pos]
            elif prefix == 2:
                pos += 2 + (data[pos] | data[pos + 1] << 8)
            elif prefix:
                pos += prefix + int.from_bytes(data[pos : pos + prefix], "little")
        return pos if pos <= end else -1
    for j, size in enumerate(sizes):
        if nulls >> j & 1:
            continue
        if size >= 0:
            pos += size
        elif size == PREFIX_1:
            pos += 1 + data[pos]
        elif size == PREFIX_2:
            pos += 2 + (data[pos] | data[pos + 1] << 8)
        else:
            pos += -size + int.from_bytes(data[pos : pos - size], "little")
    return pos if pos <= end else -1


def count_rows(
    body: Buffer, post_len: int, v2: bool, update: bool, compressed: bool, partial: bool,
    tmap: TableMap, limit: int,
) -> int | None:  # fmt: skip
    """Rows in a rows event whose table map is ``tmap``; None when they cannot be counted."""
    pos = post_len
    if v2:
        pos += body[post_len - 2] | body[post_len - 1] << 8  # extra data, its length included
        pos -= 2
    width = body[pos]
    if width < 251:  # packed_int's one-byte case, inlined: tables have fewer columns
        pos += 1
    else:
        width, pos = packed_int(body, pos)
    if width != len(tmap.sizes):
        return None
    nbm = (width + 7) >> 3
    if update:
        before, after = tmap.pair_plans(bytes(body[pos : pos + 2 * nbm]), nbm)
        pos += 2 * nbm
        if after is None:
            return None
    else:
        bitmap = bytes(body[pos : pos + nbm])
        # a dict lookup; the plan() call only the first time (or when sizes are unknown)
        before, after = tmap.plans.get(bitmap) or tmap.plan(bitmap), None
        pos += nbm
    if before is None or pos > len(body):
        return None
    data: Buffer = body
    if compressed:
        data = maria_uncompress(body[pos:], limit + 1)
        if len(data) > limit:
            return None
        pos = 0
    try:
        return _walk(data, pos, before, after, partial)
    except IndexError:  # a value's length runs past the event: sizes misunderstood
        return None


def _walk(data: Buffer, pos: int, before: Plan, after: Plan | None, partial: bool) -> int | None:
    end = len(data)
    rows = 0
    while pos < end:
        start = pos
        pos = _skip_image(data, pos, before, end)
        if pos < 0:
            return None
        if after is not None:
            if partial:
                options, pos = packed_int(data, pos)
                if options:
                    return None
            pos = _skip_image(data, pos, after, end)
            if pos < 0:
                return None
        if pos == start:  # no columns: rows take no room and cannot be counted
            return None
        rows += 1
    return rows if pos == end else None
