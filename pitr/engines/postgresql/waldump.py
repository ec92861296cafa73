"""Index a WAL segment with ``pg_waldump``: commits (xid, time, LSN), restore points.

Only the Transaction, XLOG and Storage resource managers are decoded, which keeps indexing to
a few milliseconds per 16 MB segment on the ``archive_command`` path. Each commit's summary
keeps what its record says about relations: dropped ones (``DROP``: their OIDs, from "dropped
stats"), rewritten or truncated ones (files unlinked at commit without dropped stats) and
created ones (below); ``pitr events`` turns OIDs into names and can add row counts on demand.

A new relation's first file has the relation's OID as its number: a Storage ``CREATE`` record
of the transaction (or of one of its subtransactions) whose number the commit also invalidates
in the relation cache is a relation created. The new files of a TRUNCATE or rewrite have fresh
numbers no relation cache entry bears; a rewrite's transient relation is dropped again in the
same commit. A creation logged before the transaction had an xid (``CREATE INDEX`` on its own),
or whose commit lies in a later segment than its file's creation, is not reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pitr.catalog.model import RestorePoint, Transaction
from pitr.domain.positions import format_lsn, parse_lsn
from pitr.engines import proc
from pitr.errors import FormatError

_RECORD = re.compile(
    r"^rmgr: (\w+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s+(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), "
    r"prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$"
)
_COMMIT = re.compile(
    r"^COMMIT(?:_PREPARED \d+:)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC(.*)$"
)
_RELS = re.compile(r"rels: ([^;]*)")
_DROPPED = re.compile(r"dropped stats: ([^;]*)")
_SUBXACTS = re.compile(r"subxacts:([\d ]*)")
_RELCACHE = re.compile(r"relcache (\d+)")
#: A relation's main fork (``base/5/16385``) or an unlogged one's init fork (``16385_init``).
_CREATED = re.compile(r"^CREATE (?:\S+/)?(\d+)(?:_init)?$")
FIRST_NORMAL_OID = 16384  # below: the system catalogs' own relations


@dataclass(frozen=True)
class WalIndex:
    transactions: tuple[Transaction, ...]
    restore_points: tuple[RestorePoint, ...]
    records_end: int | None  # LSN just past the last decoded record


def commit_summary(detail: str, created: Collection[str] = ()) -> str:
    """``drop=16384,16387 rewrite=16391 create=16400`` from a commit record's description
    tail and the file numbers its transaction created (see the module's docstring)."""
    parts = []
    dropped = _DROPPED.search(detail)
    oids: list[str] = []
    if dropped:
        oids = [e.split("/")[2] for e in dropped.group(1).split() if e.startswith("2/")]
        if oids:
            parts.append("drop=" + ",".join(oids))
    rels = _RELS.search(detail)
    if rels and not dropped:
        files = [f.rsplit("/", 1)[1] for f in rels.group(1).split()]
        parts.append("rewrite=" + ",".join(files))
    if created:
        invalidated = set(_RELCACHE.findall(detail))
        new = {
            n for n in created
            if n in invalidated and n not in oids and int(n) >= FIRST_NORMAL_OID
        }  # fmt: skip
        if new:
            parts.append("create=" + ",".join(sorted(new, key=int)))
    return " ".join(parts)


def parse(output: str, fallback_time: datetime) -> WalIndex:
    transactions: list[Transaction] = []
    points: list[RestorePoint] = []
    last_time = fallback_time
    end = None
    lines = output.splitlines()
    for line in reversed(lines):  # where the decoded WAL ends: the last record's position
        if m := _RECORD.match(line):
            end = parse_lsn(m.group(3))
            break
    created: defaultdict[int, list[str]] = defaultdict(list)  # file numbers, by xid
    for line in lines:
        if "desc: C" not in line and "desc: RESTORE_POINT" not in line:
            continue  # most records: skipped without a regular expression
        m = _RECORD.match(line)
        if not m:
            continue
        rmgr, xid, lsn_text, desc = m.groups()
        lsn = parse_lsn(lsn_text)
        if rmgr == "Storage":
            if (f := _CREATED.match(desc)) and xid != "0":
                created[int(xid)].append(f.group(1))
        elif rmgr == "Transaction":
            c = _COMMIT.match(desc)
            if c:
                moment = datetime.fromisoformat(c.group(1)).replace(tzinfo=UTC)
                last_time = moment
                subxacts = _SUBXACTS.search(c.group(2))
                mine = created.pop(int(xid), [])
                for sub in subxacts.group(1).split() if subxacts else []:
                    mine += created.pop(int(sub), [])
                summary = commit_summary(c.group(2), mine)
                transactions.append(
                    Transaction(moment, format_lsn(lsn), lsn, int(xid), None, None, summary)
                )
        elif rmgr == "XLOG" and desc.startswith("RESTORE_POINT "):
            name = desc.removeprefix("RESTORE_POINT ").strip()
            points.append(RestorePoint(name, format_lsn(lsn), lsn, last_time))
    return WalIndex(tuple(transactions), tuple(points), end)


def index_segment(path: Path, name: str, waldump: str, *, fallback_time: datetime) -> WalIndex:
    """Run ``pg_waldump`` on a segment and index what it shows."""
    done = proc.run(
        [waldump, "--rmgr=Transaction", "--rmgr=XLOG", "--rmgr=Storage", str(path)],
        what="pg_waldump",
        env={"TZ": "UTC", "LC_ALL": "C"},
        timeout=600,
        check=False,
    )
    output = done.text
    if done.returncode != 0 and not _ends_cleanly(done.stderr.decode(errors="replace")):
        last = done.stderr.decode(errors="replace").strip().splitlines()
        raise FormatError(f"{name}: pg_waldump cannot read it: {last[-1] if last else '?'}")
    return parse(output, fallback_time)


_END_OF_WAL = (
    "invalid record length",
    "unexpected pageaddr",
    "invalid magic number",
    "record with incorrect prev-link",
)


def _ends_cleanly(stderr: str) -> bool:
    """pg_waldump exits 1 where valid WAL ends in a switched, recycled or partial segment."""
    return any(marker in stderr for marker in _END_OF_WAL)
