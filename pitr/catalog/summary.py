"""Summary pages: the cache that keeps planning at one request per thousands of segments.

Every archived segment has its own index document (the truth). Pages gather the summary rows
of many documents (``catalog/logs/<stream>/<first>~<last>.json``); a reader takes the pages,
then the documents newer than the last page (the *tail*, found by one listing). Compaction
turns the tail into a page and merges small pages; ``rebuild`` recomputes everything from the
documents. Pages are only ever added or replaced whole, so a reader that races compaction sees
a segment twice (deduplicated by name), never not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pitr.catalog.documents import parallel, read_document, write_document
from pitr.catalog.layout import INDEX_SUFFIX, PAGE_SEPARATOR, Layout
from pitr.catalog.model import FORMAT, LogSegment, SegmentIndex, check_format
from pitr.catalog.segments import (
    COLUMNS,
    PAGE_COLUMNS,
    Columns,
    from_columns,
    rows_of,
    to_columns,
    to_row,
)
from pitr.errors import FormatError, ObjectNotFound
from pitr.storage.base import Storage

MAX_PAGES = 16  # per stream, before they are merged
PAGE_ROWS = 50_000


@dataclass(frozen=True)
class PageRef:
    key: str
    stream: str
    first: str
    last: str


def page_refs(storage: Storage, layout: Layout) -> dict[str, list[PageRef]]:
    """Every summary page, by stream, in key order."""
    refs: dict[str, list[PageRef]] = defaultdict(list)
    for info in storage.list(layout.pages):
        rest = info.key[len(layout.pages) :]
        stream, _, file = rest.partition("/")
        first, sep, last = file.removesuffix(".json").partition(PAGE_SEPARATOR)
        if sep and stream:
            refs[stream].append(PageRef(info.key, stream, first, last))
    return refs


def read_page(storage: Storage, ref: PageRef) -> Columns:
    doc = check_format(read_document(storage, ref.key), ref.key, "log-summary")
    try:
        if set(doc["columns"]) != set(PAGE_COLUMNS):
            raise KeyError("columns")
        return from_columns(doc)
    except (KeyError, TypeError, IndexError, ValueError):
        raise FormatError(
            f"{ref.key}: not a summary page this pitr reads", hint="run 'pitr catalog rebuild'"
        ) from None


def write_page(storage: Storage, layout: Layout, stream: str, rows: Sequence[Sequence[Any]]) -> str:
    key = layout.page(stream, rows[0][0], rows[-1][0])
    doc = {
        "format": FORMAT,
        "kind": "log-summary",
        "stream": stream,
        "count": len(rows),
        **to_columns(rows, layout.stream_dir(stream)),
    }
    write_document(storage, key, doc)
    return key


def tail_start(layout: Layout, stream: str, pages: Sequence[PageRef]) -> str | None:
    """The listing start after the last segment the pages cover (``~`` sorts after ``.json``)."""
    if not pages:
        return None
    return layout.log_object(stream, max(p.last for p in pages), PAGE_SEPARATOR)


def tail_documents(
    storage: Storage, layout: Layout, stream: str, pages: Sequence[PageRef]
) -> list[SegmentIndex]:
    """Index documents of ``stream`` newer than its pages, read in parallel."""
    prefix = layout.stream_dir(stream)
    keys = [
        info.key
        for info in storage.list(prefix, start_after=tail_start(layout, stream, pages))
        if info.key.endswith(INDEX_SUFFIX)
    ]
    return [doc for doc in parallel(lambda k: _read_index(storage, k), keys) if doc is not None]


def _read_index(storage: Storage, key: str) -> SegmentIndex | None:
    try:
        return SegmentIndex.from_document(read_document(storage, key), key)
    except ObjectNotFound:  # expired between the listing and the read
        return None


def compact(storage: Storage, layout: Layout, stream: str) -> int:
    """Fold the tail of ``stream`` into a page; merge pages when there are many. Returns the
    number of segments newly summarised. Run under the instance lock (or by wal-push for its
    own stream at a segment boundary: pages never lose rows, so races are harmless)."""
    pages = page_refs(storage, layout).get(stream, [])
    tail = tail_documents(storage, layout, stream, pages)
    if tail:
        key = COLUMNS.index("start_key")
        rows = sorted((to_row(d.segment) for d in tail), key=lambda r: (r[key], r[0]))
        pages.append(PageRef(write_page(storage, layout, stream, rows), stream, "", ""))
    if len(pages) > MAX_PAGES:
        _merge(storage, layout, stream, pages)
    return len(tail)


def compact_all(storage: Storage, layout: Layout) -> int:
    """``compact`` every log stream of the instance (after a backup, under its lock), so
    planning stays at a few requests. Returns the number of segments newly summarised."""
    streams = [p.removeprefix(layout.logs)[:-1] for p in storage.list_prefixes(layout.logs)]
    return sum(compact(storage, layout, stream) for stream in streams)


def _merge(storage: Storage, layout: Layout, stream: str, pages: Sequence[PageRef]) -> None:
    rows_by_name: dict[str, Sequence[Any]] = {}
    for columns in parallel(lambda ref: read_page(storage, ref), pages):
        rows_by_name.update((row[0], row) for row in rows_of(columns))
    write_pages(storage, layout, stream, list(rows_by_name.values()), replace=pages)


def write_pages(
    storage: Storage,
    layout: Layout,
    stream: str,
    rows: Sequence[Sequence[Any]],
    *,
    replace: Sequence[PageRef] = (),
) -> None:
    """Write ``rows`` as pages of at most ``PAGE_ROWS``, then delete the pages they replace."""
    ordered = sorted(rows, key=lambda r: (r[COLUMNS.index("start_key")], r[0]))
    written = {
        write_page(storage, layout, stream, ordered[i : i + PAGE_ROWS])
        for i in range(0, len(ordered), PAGE_ROWS)
    }
    for ref in replace:
        if ref.key not in written:
            storage.delete(ref.key)


def rebuild_stream(storage: Storage, layout: Layout, stream: str) -> list[LogSegment]:
    """Recompute the pages of ``stream`` from every index document it has."""
    old = page_refs(storage, layout).get(stream, [])
    documents = tail_documents(storage, layout, stream, [])
    segments = [d.segment for d in documents]
    write_pages(storage, layout, stream, [to_row(s) for s in segments], replace=old)
    return segments
