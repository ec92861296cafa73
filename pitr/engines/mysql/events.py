"""``pitr events`` for MariaDB/MySQL: every transaction of the archived binlogs, from their
index documents (no binlog is downloaded) — time, GTID, position, binlog, and what it did:
the statement of a DDL, rows per table for row events ("UPDATE shop.big: 12 rows")."""

from __future__ import annotations

from datetime import datetime

from pitr.catalog import Catalog
from pitr.catalog.model import LogSegment
from pitr.catalog.store import CatalogStore
from pitr.engines.base import Event


def segments_between(
    catalog: Catalog, start: datetime | None, end: datetime | None
) -> list[LogSegment]:
    """Binlogs holding a commit in ``[start, end]``, in stream and file order."""
    found = []
    for run in catalog.streams.values():
        lows, highs = run.column("min_commit"), run.column("max_commit")
        for i in range(len(run)):
            if lows[i] is None or highs[i] is None:
                continue
            seg = run[i]
            assert seg.min_commit is not None and seg.max_commit is not None
            if (start is None or seg.max_commit >= start) and (
                end is None or seg.min_commit <= end
            ):
                found.append(seg)
    return found


def binlog_events(
    store: CatalogStore, catalog: Catalog, start: datetime | None, end: datetime | None
) -> list[Event]:
    """The transactions committed in ``[start, end]``, by commit time, then in binlog order."""
    segments = segments_between(catalog, start, end)
    located = store.transactions(segments, contents=True)
    events = []
    for order, seg in enumerate(segments):
        for n, tx in enumerate(located[seg.ref]):
            if tx.time is None or (start and tx.time < start) or (end and tx.time > end):
                continue
            summary = tx.summary or "COMMIT"
            # no xid: the GTID names a binlog transaction (docs/json.md)
            event = Event(
                tx.time, tx.position, seg.name, summary, gtid=tx.gtid, end=tx.end, stream=seg.stream
            )
            events.append(((tx.time, order, n), event))
    return [event for _, event in sorted(events, key=lambda e: e[0])]
