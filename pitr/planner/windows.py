"""Recoverable windows per PostgreSQL timeline and per MariaDB GTID domain (MySQL: source).

A plan's ``window`` is the span on the path it follows; ``windows`` lists every timeline's or
every domain's, from the catalog alone (no index document is read):

- a timeline's window is the one a plan following that timeline has: from the oldest usable
  backup on its path to the last commit archived contiguously on it (none when its history
  file is not archived);
- a domain's window runs from the oldest full backup's consistent point to the last commit of
  the newest contiguously archived binlog holding a transaction of the domain (binlog
  granularity; a backup's point when none after it does), with the domain's GTID state there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment
from pitr.domain.gtid import MariaGtidPosition, MysqlGtidSet
from pitr.planner import wal
from pitr.planner.plan import ScopedWindow, Window

#: a full backup and the binlogs archived contiguously after its position
BinlogChain = tuple[Backup, Sequence[LogSegment]]


def of_timelines(
    catalog: Catalog, missing: frozenset[str], known: Mapping[int, Window]
) -> tuple[ScopedWindow, ...]:
    """One window per timeline, oldest first; ``known`` holds those already computed."""
    size = wal.segment_size_of(catalog)
    found = []
    for tli in wal.timelines(catalog):
        window = known.get(tli)
        if window is None:
            path = wal.timeline_path(catalog, tli)
            gone = any(h.object.key in missing for h in wal.histories_followed(catalog, tli))
            if path is None or gone:
                window = Window(None, None)
            else:
                window = wal.window_on(catalog, wal.Walker(catalog, path, size), None, missing)
        found.append(ScopedWindow("timeline", tli, window))
    return tuple(found)


def by_domain(mariadb: bool, state: str | None) -> dict[int | str, str]:
    """A GTID state split by domain (MariaDB) or by source ``uuid[:tag]`` (MySQL)."""
    if not state:
        return {}
    if mariadb:
        return {g.domain: str(g) for g in MariaGtidPosition.parse(state).gtids}
    found: dict[int | str, str] = {}
    for source, intervals in MysqlGtidSet.parse(state).sources:
        uuid, tag = source
        found[f"{uuid}:{tag}" if tag else uuid] = str(MysqlGtidSet(((source, intervals),)))
    return found


def _last_advances(mariadb: bool, segments: Sequence[LogSegment]) -> dict[int | str, int]:
    """For each domain of the state the segments end with, how many segments from the end
    the last one that advanced it is (0: the last segment). Walks back only as far as the
    quietest domain needs."""
    if not segments:
        return {}
    wanted = set(by_domain(mariadb, segments[-1].gtids_after))
    found: dict[int | str, int] = {}
    for back, seg in enumerate(reversed(segments)):
        if len(found) == len(wanted):
            break
        if seg.gtids_after is None or seg.gtids_before is None or seg.max_commit is None:
            continue  # not recorded: nothing known to have advanced here
        before = by_domain(mariadb, seg.gtids_before)
        for domain, state in by_domain(mariadb, seg.gtids_after).items():
            if domain in wanted and domain not in found and before.get(domain) != state:
                found[domain] = back
    return found


def of_domains(engine: str, chains: Sequence[BinlogChain]) -> tuple[ScopedWindow, ...]:
    """One window per GTID domain (MariaDB) or source (MySQL), in order.

    Chains ending in the same binlog are suffixes of the longest of them: it is walked once."""
    mariadb = engine == "mariadb"
    earliest = min((full.end_time for full, _ in chains), default=None)
    latest: dict[int | str, tuple[datetime, str]] = {}  # domain -> last commit, state there
    longest: dict[str, Sequence[LogSegment]] = {}
    for _full, segments in chains:
        if segments and len(segments) > len(longest.get(segments[-1].ref, ())):
            longest[segments[-1].ref] = segments
    advances = {ref: _last_advances(mariadb, segs) for ref, segs in longest.items()}
    for full, segments in chains:
        end = by_domain(mariadb, segments[-1].gtids_after if segments else None)
        for domain, state in {**by_domain(mariadb, full.gtid_state), **end}.items():
            back = advances[segments[-1].ref].get(domain) if segments else None
            moment = full.end_time
            if back is not None and back < len(segments):
                moment = max(moment, segments[len(segments) - 1 - back].max_commit or moment)
            if domain not in latest or moment > latest[domain][0]:
                latest[domain] = (moment, state)
    scope: Literal["domain", "source"] = "domain" if mariadb else "source"
    return tuple(
        ScopedWindow(scope, domain, Window(earliest, moment), gtids=state)
        for domain, (moment, state) in sorted(latest.items(), key=lambda kv: str(kv[0]).zfill(10))
    )
