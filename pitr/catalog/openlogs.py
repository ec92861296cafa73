"""The open binlog's complete transactions, shipped by ``archive --follow`` before the server
closes the file (docs/mariadb.md, "Following the binlogs").

```
<instance>/open/<stream>/<log name>.<end offset><suffix>   the file's first <end> bytes
<instance>/open/<stream>/<log name>.json                   their index document
```

The follower uploads a longer prefix (a new object, named by its length), then replaces the
index document, then deletes the shorter object: a reader sees one complete pair or the one
before. Once the closed file is archived under ``logs/``, its open pair is obsolete and
removed. Planning (``with_open``) adds the newest open binlog of a stream as that stream's last
segment, unless the closed file is archived already; ``list``, ``status`` and the metrics count
it the same way (``CatalogStore.load_current``), so they show the window and the archive lag
the follower really gives.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import replace

from pitr.catalog import Catalog
from pitr.catalog.documents import parallel, read_document, write_document
from pitr.catalog.layout import INDEX_SUFFIX, Layout
from pitr.catalog.model import LogSegment, SegmentIndex
from pitr.catalog.segments import SegmentRun
from pitr.errors import ObjectNotFound
from pitr.storage.base import Storage

log = logging.getLogger("pitr.catalog")


def prefix(layout: Layout) -> str:
    return f"{layout.root}open/"


def object_key(layout: Layout, stream: str, name: str, end: int, suffix: str) -> str:
    return f"{prefix(layout)}{stream}/{name}.{end}{suffix}"


def index_key(layout: Layout, stream: str, name: str) -> str:
    return f"{prefix(layout)}{stream}/{name}{INDEX_SUFFIX}"


def is_open(layout: Layout, segment: LogSegment) -> bool:
    return segment.object.key.startswith(prefix(layout))


def read_index(storage: Storage, layout: Layout, segment: LogSegment) -> SegmentIndex:
    key = index_key(layout, segment.stream, segment.name)
    return SegmentIndex.from_document(read_document(storage, key), key)


def open_indexes(storage: Storage, layout: Layout) -> list[SegmentIndex]:
    """Every open binlog's index document (one listing, then the documents)."""
    keys = [i.key for i in storage.list(prefix(layout)) if i.key.endswith(INDEX_SUFFIX)]

    def read(key: str) -> SegmentIndex | None:
        try:
            return SegmentIndex.from_document(read_document(storage, key), key)
        except ObjectNotFound:  # replaced or removed meanwhile
            return None

    return [doc for doc in parallel(read, keys) if doc is not None]


def with_open(storage: Storage, layout: Layout, catalog: Catalog) -> Catalog:
    """``catalog`` with each stream's open binlog as its last segment (when newer than the
    stream's archived files)."""
    streams = dict(catalog.streams)
    for doc in sorted(open_indexes(storage, layout), key=lambda d: d.segment.name):
        seg = doc.segment
        run = streams.get(seg.stream)
        names = run.column("name") if run is not None else []
        if names and seg.name <= names[-1]:
            continue  # archived closed (or older): obsolete
        streams[seg.stream] = SegmentRun.of(seg.stream, [*(run or ()), seg])
    return replace(catalog, streams=streams)


def opened(layout: Layout, catalog: Catalog) -> dict[str, str]:
    """Stream -> the open log ``with_open`` made its last segment (none: not there)."""
    found = {}
    for stream, run in catalog.streams.items():
        if len(run) and is_open(layout, last := run[len(run) - 1]):
            found[stream] = last.name
    return found


def publish(storage: Storage, layout: Layout, index: SegmentIndex, previous: str | None) -> None:
    """Replace an open binlog's index document; then remove the object it replaced."""
    seg = index.segment
    write_document(storage, index_key(layout, seg.stream, seg.name), index.to_dict())
    if previous and previous != seg.object.key:
        with contextlib.suppress(ObjectNotFound):
            storage.delete(previous)


def remove(storage: Storage, layout: Layout, stream: str, name: str) -> None:
    """Remove an open binlog's objects (its closed file is archived)."""
    keys = [i.key for i in storage.list(f"{prefix(layout)}{stream}/{name}.")]
    index = index_key(layout, stream, name)
    for key in sorted(keys, key=lambda k: k == index, reverse=True):  # the document first
        with contextlib.suppress(ObjectNotFound):
            storage.delete(key)
    if keys:
        log.info("open copy of %s removed: the closed file is archived", name)


#: ``<log name>.<end offset><suffix>`` or ``<log name>.json`` under ``open/<stream>/``
_OPEN_NAME = re.compile(r"^(?P<stream>[^/]+)/(?P<name>.+)\.(?:\d+(?:\.zst)?(?:\.age)?|json)$")


def remove_obsolete(storage: Storage, layout: Layout, catalog: Catalog) -> list[str]:
    """Remove the open copies whose closed file is archived in ``catalog`` (or was, and has
    expired since): named at or before the newest archived file of their stream. The
    follower never writes those again (it ships newer files only). Returns the keys removed."""
    newest = {s: run.column("name")[-1] for s, run in catalog.streams.items() if len(run)}
    base = prefix(layout)
    gone = []
    for item in sorted(storage.list(base), key=lambda i: not i.key.endswith(INDEX_SUFFIX)):
        found = _OPEN_NAME.match(item.key[len(base) :])
        if found is None or found["name"] > newest.get(found["stream"], ""):
            continue
        with contextlib.suppress(ObjectNotFound):
            storage.delete(item.key)
        gone.append(item.key)
    if gone:
        log.info("%d leftover open log object(s) removed: their files are archived", len(gone))
    return gone
