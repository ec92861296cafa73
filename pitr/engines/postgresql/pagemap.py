"""Page maps of block-level incremental backups (docs/catalog-format.md, "Page maps").

Which blocks a link of a chain carries, pure: finding the pages of a relation file whose LSN
moved (``changed_blocks``: the 8-byte ``pd_lsn`` at the start of each page, read from big
buffers with a strided ``memoryview``, no per-page ``struct`` call), block lists kept as
ranges, and the proof and plan a restore makes before it writes anything (``resolve``): every
block of every file of the final data directory comes from exactly one link — the newest that
carries it and is not older than a truncation of the file — and is written once, by that link
(the others read past it), or the chain is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pitr.errors import FormatError

#: A main-fork segment of a relation (``16384``, ``16384.2``) in ``base/<db>/``, ``global/``
#: or a tablespace's ``pg_tblspc/<oid>/<version dir>/<db>/``. Other forks are copied whole:
#: the free space map is not WAL-logged, and clearing a visibility map bit leaves its LSN.
_RELATION = re.compile(r"(?:base/\d+|global|pg_tblspc/\d+/[^/]+/\d+)/\d+(?:\.\d+)?")

Ranges = list[list[int]]  # [[first block, count], ...], ascending, never touching


def is_relation(name: str) -> bool:
    """Is ``name`` (as archived) a main-fork relation segment, copied page by page?"""
    return _RELATION.fullmatch(name) is not None


def changed_blocks(
    buffer: bytes | bytearray | memoryview, first: int, since: int, old_blocks: int, block: int
) -> Iterator[int]:
    """Blocks of ``buffer`` (whole pages, starting with block ``first``) to carry: those whose
    page LSN is at or after ``since`` or zero (a new, empty page), and every block at or beyond
    ``old_blocks`` (the parent's length: the file grew, or was truncated and grew again)."""
    pages = len(buffer) // block
    if pages == 0:
        return
    words = memoryview(buffer)[: pages * block].cast("I")  # pd_lsn: xlogid, then xrecoff
    step = block // 4
    high, low = words[0::step], words[1::step]
    for n in range(pages):
        at = first + n
        lsn = (high[n] << 32) | low[n]
        if at >= old_blocks or lsn >= since or lsn == 0:
            yield at


def to_ranges(blocks: Iterable[int]) -> Ranges:
    """Ascending block numbers as ``[first, count]`` runs."""
    ranges: Ranges = []
    for b in blocks:
        if ranges and ranges[-1][0] + ranges[-1][1] == b:
            ranges[-1][1] += 1
        else:
            ranges.append([b, 1])
    return ranges


def count(ranges: Ranges) -> int:
    return sum(c for _, c in ranges)


@dataclass(frozen=True)
class Link:
    """What one backup of a chain holds, file by file: ``present`` every file of the data
    directory when it was taken (name -> size in bytes), ``whole`` the files it carries whole,
    ``pages`` those it carries page by page (name -> block ranges; the size is ``present``'s)."""

    id: str
    present: Mapping[str, int]
    whole: frozenset[str]
    pages: Mapping[str, Ranges] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where one link's data goes in the result: the files it writes whole, the pages it
    carries (name -> ranges, as its entry holds them), the length each of those files is cut
    to afterwards, and ``skip``: the blocks of those files it reads past without writing (a
    newer link's copy is the one that stays, or a truncation since drops them)."""

    whole: frozenset[str]
    pages: Mapping[str, Ranges]
    lengths: Mapping[str, int]
    skip: Mapping[str, Ranges] = field(default_factory=dict)
    block: int = 8192


def resolve(chain: Sequence[Link], block: int) -> list[Source]:
    """What each link writes, oldest first, so that every block of every file of the last link
    is written once, by the newest link carrying it: a file is written whole by the newest
    link that has it whole (older links leave it alone) and patched by the page maps after
    that one, each leaving out the blocks a newer link brings. Raises ``FormatError`` naming
    the file and block when some block comes from no link (a corrupt or incomplete chain:
    nothing should be written then)."""
    final = chain[-1].present
    newest_whole: dict[str, int] = {}
    for n, link in enumerate(chain):
        for name in link.whole:
            newest_whole[name] = n
    sources = [_Writes() for _ in chain]
    for name in final:
        base = newest_whole.get(name)
        if base is None:
            raise FormatError(f"{name}: no link of backup {chain[-1].id}'s chain has it whole")
        sources[base].whole.add(name)
        sources[base].lengths[name] = chain[base].present[name]
        for n in range(base + 1, len(chain)):
            link = chain[n]
            if name not in link.present:
                raise FormatError(f"{name}: missing from backup {link.id} of the chain")
            if name in link.pages:
                sources[n].pages[name] = link.pages[name]
                sources[n].lengths[name] = link.present[name]
        for n, passed in _once(chain, base, name, block):
            sources[n].skip[name] = passed
    return [Source(frozenset(s.whole), s.pages, s.lengths, s.skip, block) for s in sources]


@dataclass
class _Writes:
    whole: set[str] = field(default_factory=set)
    pages: dict[str, Ranges] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    skip: dict[str, Ranges] = field(default_factory=dict)


def _once(chain: Sequence[Link], base: int, name: str, block: int) -> list[tuple[int, Ranges]]:
    """The proof and the plan of one file: newest first, a link supplies the blocks it carries
    below the smallest length seen since (a file truncated in between lost what was past its
    end then: those pages must come from a newer link) that no newer link supplied; what it
    carries beyond that it skips. Returns (link, blocks skipped) where there are any; raises
    when a block of the final file has no source."""
    blocks = -(-chain[-1].present[name] // block)
    covered: Ranges = []
    limit = blocks
    skips = []
    for n in range(len(chain) - 1, base - 1, -1):
        size = -(-chain[n].present[name] // block)
        limit = min(limit, size)
        carried = [[0, size]] if n == base and size else chain[n].pages.get(name, [])
        below = [[f, min(f + c, limit) - f] for f, c in carried if f < limit]
        supplied = subtract(below, covered)
        covered = union(covered, supplied)
        if passed := subtract(carried, supplied):
            skips.append((n, passed))
    hole = subtract([[0, blocks]] if blocks else [], covered)
    if hole:
        raise FormatError(
            f"{name}: block {hole[0][0]} comes from no backup of the chain (broken chain)"
        )
    return skips


def subtract(ranges: Ranges, away: Ranges) -> Ranges:
    """The blocks of ``ranges`` not in ``away`` (both ascending runs), as runs."""
    out: Ranges = []
    i = 0
    for first, number in ranges:
        start, end = first, first + number
        while i < len(away) and away[i][0] + away[i][1] <= start:
            i += 1
        j = i
        while start < end and j < len(away) and away[j][0] < end:
            if away[j][0] > start:
                out.append([start, away[j][0] - start])
            start = max(start, away[j][0] + away[j][1])
            j += 1
        if start < end:
            out.append([start, end - start])
    return out


def union(a: Ranges, b: Ranges) -> Ranges:
    """The blocks in either (ascending runs), as ascending runs, adjacent ones joined."""
    out: Ranges = []
    for first, number in sorted(a + b):
        if out and first <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], first + number - out[-1][0])
        elif number:
            out.append([first, number])
    return out


def runs(carried: Ranges, skip: Ranges) -> list[tuple[int, int, bool]]:
    """``carried`` (the blocks of an entry, in its order) split into (first, count, write?)
    pieces, those in ``skip`` not to be written."""
    pieces = [(f, c, True) for f, c in subtract(carried, skip)]
    pieces += [(f, c, False) for f, c in subtract(carried, subtract(carried, skip))]
    return sorted(pieces)


def link_of_document(backup_id: str, present: Mapping[str, int], doc: Mapping[str, Any]) -> Link:
    """An incremental's link from its page-map document (see ``page_map_document``)."""
    try:
        pages = {
            name: [[int(a), int(c)] for a, c in v["blocks"]] for name, v in doc["files"].items()
        }
        return Link(backup_id, present, frozenset(doc["whole"]), pages)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"backup {backup_id}: malformed page map ({exc})") from None
