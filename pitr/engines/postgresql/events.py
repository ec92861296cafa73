"""``pitr events`` for PostgreSQL: the committed transactions in the archived WAL.

Answered from the index documents (no WAL is downloaded): time, xid, LSN, segment, and what
the commit record says about relations — dropped tables by name (names come from the relation
maps recorded with each backup: a dropped table's name is no longer in the database), tables
truncated or rewritten, tables created (named once a later backup knows them). ``--rows`` adds
rows inserted/updated/deleted per table by reading the segments themselves with pg_waldump.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pitr import crypt
from pitr.catalog import Catalog
from pitr.catalog.model import LogSegment, Transaction
from pitr.catalog.sealing import open_backup
from pitr.catalog.store import CatalogStore
from pitr.domain.positions import parse_lsn
from pitr.engines import proc
from pitr.engines.base import Event
from pitr.engines.postgresql.waldump import FIRST_NORMAL_OID
from pitr.storage.transfer import download

_HEAP = re.compile(
    r"^rmgr: (Heap2?)\s+len.*?tx:\s+(\d+), lsn: \S+, prev \S+, desc: ([A-Z0-9_+]+)(.*)$"
)
_BLOCK = re.compile(r"blkref #0: rel \d+/(\d+)/(\d+)")
_TUPLES = re.compile(r"ntuples: (\d+)")
ROW_OPS = {"INSERT": "INSERT", "INSERT+INIT": "INSERT", "UPDATE": "UPDATE",
           "HOT_UPDATE": "UPDATE", "UPDATE+INIT": "UPDATE", "HOT_UPDATE+INIT": "UPDATE",
           "DELETE": "DELETE", "MULTI_INSERT": "INSERT", "MULTI_INSERT+INIT": "INSERT"}  # fmt: skip


def relation_names(catalog: Catalog, *, parts: bool = False) -> dict[str, str]:
    """Table names by OID or file node, from every backup's map (newest wins); with
    ``parts``, their indexes and TOAST relations map to the table's name too."""
    names: dict[str, str] = {}
    for backup in catalog.backups:
        meta = open_backup(backup, crypt.installed()).engine_meta  # sealed when encrypted
        for database in meta.get("relations", {}).values():
            if parts:
                names.update(database.get("parts", {}))
            names.update(database.get("tables", {}))
    return names


def describe(
    tx: Transaction,
    names: dict[str, str],
    rows: Counter[tuple[str, str]] | None,
    relations: dict[str, str] | None = None,
) -> str:
    """One line for a transaction: what its commit record dropped, rewrote or created (by
    table name: ``relations`` also names indexes and TOAST relations), then rows changed."""
    parts = []
    for item in tx.summary.split():
        what, _, oids = item.partition("=")
        numbers = [o for o in oids.split(",") if o]
        if what == "drop":
            parts.append("DROP TABLE " + _named(numbers, relations or names))
        elif what == "rewrite":
            parts.append("TRUNCATE or rewrite of " + _named(numbers, relations or names))
        elif what == "create":
            parts.extend(_created(numbers, names, relations or names))
    for (op, rel), count in sorted((rows or Counter()).items()):
        if rel in names:
            parts.append(f"{op} {names[rel]}: {count} rows")
        elif rel not in (relations or {}) and int(rel) >= FIRST_NORMAL_OID:
            parts.append(f"{op} relation {rel}: {count} rows")
        # else: a system catalog, or the TOAST relation of a table (counted in its rows)
    return "; ".join(parts) or "COMMIT"


def _named(numbers: list[str], names: dict[str, str]) -> str:
    """The tables behind relation OIDs or file nodes (a table's indexes and TOAST relations
    read as the table itself), then the numbers no backup knows (created after the last one)."""
    known = sorted({names[n] for n in numbers if n in names})
    unknown = sorted({n for n in numbers if n not in names}, key=int)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        known.append(f"relation{plural} {', '.join(unknown)} (not named in any backup)")
    return ", ".join(known)


def _created(numbers: list[str], names: dict[str, str], relations: dict[str, str]) -> list[str]:
    """``CREATE TABLE`` for the tables a later backup names; the indexes and TOAST relations
    it knows go without saying (creating a table creates them, an index is not a table); the
    numbers no backup knows yet are listed as relations."""
    said = []
    tables = sorted({names[n] for n in numbers if n in names})
    if tables:
        said.append("CREATE TABLE " + ", ".join(tables))
    unknown = [n for n in numbers if n not in relations]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        said.append(f"CREATE relation{plural} {', '.join(unknown)} (not named in any backup)")
    return said


def segments_between(
    catalog: Catalog, start: datetime | None, end: datetime | None
) -> list[LogSegment]:
    found = []
    for run in catalog.streams.values():
        for seg in run:
            if not seg.commits or seg.min_commit is None or seg.max_commit is None:
                continue
            if (start is None or seg.max_commit >= start) and (
                end is None or seg.min_commit <= end
            ):
                found.append(seg)
    return sorted(found, key=lambda s: (s.min_commit or datetime.min, s.name))


def row_counts(
    store: CatalogStore, segments: Iterable[LogSegment], waldump: str
) -> dict[int, Counter[tuple[str, str]]]:
    """Rows changed per transaction and table, read from the WAL itself."""
    counts: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    with tempfile.TemporaryDirectory(prefix="pitr-events-") as tmp:
        for seg in segments:
            path = Path(tmp) / seg.name
            with path.open("wb") as out:
                download(store.storage, seg.object, out)
            done = proc.run([waldump, "--rmgr=Heap", "--rmgr=Heap2", str(path)],
                            what="pg_waldump", env={"LC_ALL": "C"}, check=False)  # fmt: skip
            for line in done.text.splitlines():
                m = _HEAP.match(line)
                block = _BLOCK.search(m.group(4)) if m and m.group(3) in ROW_OPS else None
                if not m or not block:
                    continue
                n = _TUPLES.search(m.group(4))
                counts[int(m.group(2))][(ROW_OPS[m.group(3)], block.group(2))] += (
                    int(n.group(1)) if n else 1
                )
            path.unlink()
    return counts


def pg_events(
    store: CatalogStore,
    catalog: Catalog,
    start: datetime | None,
    end: datetime | None,
    *,
    waldump: str | None = None,
) -> list[Event]:
    """The transactions committed in ``[start, end]``, by commit time, then WAL location."""
    segments = segments_between(catalog, start, end)
    located = store.transactions(segments, contents=True)
    rows = row_counts(store, segments, waldump) if waldump else {}
    names = relation_names(catalog)
    relations = relation_names(catalog, parts=True)
    events = []
    for seg in segments:
        for tx in located[seg.ref]:
            if tx.time is None or (start and tx.time < start) or (end and tx.time > end):
                continue
            summary = describe(tx, names, rows.get(tx.xid or -1), relations)
            timeline = int(seg.stream, 16)
            events.append(Event(tx.time, tx.position, seg.name, summary, tx.xid, timeline=timeline))
    return in_order(events)


def in_order(events: Iterable[Event]) -> list[Event]:
    """By commit time, then WAL location as a number (``0/A000000`` before ``0/16533E18``)."""
    return sorted(events, key=lambda e: (e.time, parse_lsn(e.position)))
