"""Page maps of block-level incrementals (pitr/engines/postgresql/pagemap.py), pure.

- ``changed_blocks`` finds exactly the pages whose LSN is at or after the threshold, zero
  pages, and every page past the parent's length, from the raw bytes of pages;
- ``resolve`` over generated histories of one file (rewritten whole, patched, truncated,
  extended) reproduces the file's final blocks exactly, each from one link and written once
  (the other links read past it), and refuses a chain from which a block cannot come (naming
  file and block);
- the range arithmetic behind that plan (``subtract``, ``union``, ``runs``) agrees with sets.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.engines.postgresql.pagemap import (
    Link,
    changed_blocks,
    is_relation,
    resolve,
    runs,
    subtract,
    to_ranges,
    union,
)
from pitr.errors import FormatError

BLOCK = 64  # small pages: the logic does not depend on 8192


def page(lsn: int) -> bytes:
    return struct.pack("<II", lsn >> 32, lsn & 0xFFFFFFFF) + bytes(BLOCK - 8)


@given(st.lists(st.integers(0, 2**40), max_size=40), st.integers(0, 2**40), st.integers(0, 45))
def test_changed_blocks_reads_each_page_lsn(lsns: list[int], since: int, old: int) -> None:
    data = b"".join(page(lsn) for lsn in lsns)
    found = list(changed_blocks(data, 10, since, old + 10, BLOCK))
    wanted = [10 + n for n, lsn in enumerate(lsns) if lsn >= since or lsn == 0 or n >= old]
    assert found == wanted


def test_relation_names() -> None:
    assert is_relation("base/5/16384") and is_relation("base/5/16384.12")
    assert is_relation("global/1262") and is_relation("pg_tblspc/16400/PG_15_202209061/5/16401")
    for other in ("base/5/16384_fsm", "base/5/16384_vm", "base/5/16384_init", "base/5/PG_VERSION",
                  "global/pg_control", "pg_xact/0000", "base/5/pg_filenode.map"):  # fmt: skip
        assert not is_relation(other)


Snapshot = list[tuple[int, int]]  # the file's blocks when a link was taken: (writer, block)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Link], list[Snapshot]]:
    """One file through a chain: rewritten, patched, truncated, extended; each link with what
    it carries (an incremental: changed pages and every page past its parent's length)."""
    blocks: Snapshot = [(0, n) for n in range(draw(st.integers(0, 12)))]
    links = [Link("L0", {"f": len(blocks) * BLOCK}, frozenset({"f"}))]
    snapshots = [list(blocks)]
    for n in range(1, draw(st.integers(1, 6))):
        before = len(blocks)
        what = draw(st.sampled_from(["patch", "truncate", "extend", "whole"]))
        if what == "truncate":
            blocks = blocks[: draw(st.integers(0, len(blocks)))]
        elif what == "extend":
            blocks += [(n, len(blocks) + k) for k in range(draw(st.integers(1, 5)))]
        changed = {b for b in range(len(blocks)) if draw(st.booleans())}
        for b in changed:
            blocks[b] = (n, b)
        record = {"f": len(blocks) * BLOCK}
        snapshots.append(list(blocks))
        if what == "whole":
            links.append(Link(f"L{n}", record, frozenset({"f"})))
            continue
        carried = sorted(changed | set(range(min(before, len(blocks)), len(blocks))))
        links.append(Link(f"L{n}", record, frozenset(), {"f": to_ranges(carried)}))
    return links, snapshots


def restored(links: list[Link], snapshots: list[Snapshot]) -> list[object]:
    """Written as the restore writes: a link's whole file, its pages at their offsets, each
    but the blocks it skips, the file cut (or grown with zeros) to the length it recorded.
    Every block that is written is written once and stays: no link writes over another."""
    out: list[object] = []
    written: list[int] = []
    for n, source in enumerate(resolve(links, BLOCK)):
        skip = blocks_of(source.skip.get("f", []))
        if "f" in source.whole:
            out = [None if b in skip else page for b, page in enumerate(snapshots[n])]
            written += [b for b in range(len(out)) if b not in skip]
        for first, count in source.pages.get("f", []):
            for b in set(range(first, first + count)) - skip:
                out += [None] * (b + 1 - len(out))
                out[b] = snapshots[n][b]
                written.append(b)
        if "f" in source.lengths:
            size = source.lengths["f"] // BLOCK
            out = out[:size] + [None] * (size - len(out))
    assert sorted(written) == list(range(len(snapshots[-1])))  # each block of the result once
    return out


def blocks_of(ranges: list[list[int]]) -> set[int]:
    return {b for first, count in ranges for b in range(first, first + count)}


@settings(max_examples=150, deadline=None)
@given(histories())
def test_resolve_rebuilds_the_file_writing_each_block_once(
    history: tuple[list[Link], list[Snapshot]],
) -> None:
    links, snapshots = history
    assert restored(links, snapshots) == snapshots[-1]


sets_of_blocks = st.sets(st.integers(0, 60), max_size=30)


@given(sets_of_blocks, sets_of_blocks)
def test_range_arithmetic_agrees_with_sets(a: set[int], b: set[int]) -> None:
    ra, rb = to_ranges(sorted(a)), to_ranges(sorted(b))
    assert subtract(ra, rb) == to_ranges(sorted(a - b))
    assert union(ra, rb) == to_ranges(sorted(a | b))
    pieces = runs(ra, rb)
    assert [b for f, c, _ in pieces for b in range(f, f + c)] == sorted(a)  # the entry's order
    assert {b for f, c, w in pieces if w for b in range(f, f + c)} == a - b


def test_a_block_from_no_link_is_refused() -> None:
    links = [
        Link("F", {"f": 4 * BLOCK}, frozenset({"f"})),
        Link("I1", {"f": 2 * BLOCK}, frozenset(), {"f": []}),  # truncated to 2 blocks
        Link("I2", {"f": 5 * BLOCK}, frozenset(), {"f": [[2, 2]]}),  # block 4 never sent
    ]
    with pytest.raises(FormatError, match="f: block 4 comes from no backup"):
        resolve(links, BLOCK)
    dropped = [
        links[0],
        Link("I1", {}, frozenset()),
        Link("I2", {"f": BLOCK}, frozenset(), {"f": [[0, 1]]}),
    ]
    with pytest.raises(FormatError, match="missing from backup I1"):
        resolve(dropped, BLOCK)
