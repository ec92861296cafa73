"""Index a WAL segment with ``pg_waldump``: commits (xid, time, LSN), restore points.

Only the Transaction and XLOG resource managers are decoded, which keeps indexing to a few
milliseconds per 16 MB segment on the ``archive_command`` path. Each commit's summary keeps
what its record says about relations: dropped ones (``DROP``: their OIDs, from "dropped
stats") and rewritten or truncated ones (files unlinked at commit without dropped stats);
``pitr events`` turns OIDs into names and can add row counts on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pitr import proc
from pitr.catalog.model import RestorePoint, Transaction
from pitr.errors import FormatError
from pitr.targets import format_lsn, parse_lsn

_RECORD = re.compile(
    r"^rmgr: (\w+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s+(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), "
    r"prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$"
)
_COMMIT = re.compile(
    r"^COMMIT(?:_PREPARED \d+:)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC(.*)$"
)
_RELS = re.compile(r"rels: ([^;]*)")
_DROPPED = re.compile(r"dropped stats: ([^;]*)")


@dataclass(frozen=True)
class WalIndex:
    transactions: tuple[Transaction, ...]
    restore_points: tuple[RestorePoint, ...]
    records_end: int | None  # LSN just past the last decoded record


def commit_summary(detail: str) -> str:
    """``drop=16384,16387 rewrite=16391`` from a commit record's description tail."""
    parts = []
    dropped = _DROPPED.search(detail)
    if dropped:
        oids = [e.split("/")[2] for e in dropped.group(1).split() if e.startswith("2/")]
        if oids:
            parts.append("drop=" + ",".join(oids))
    rels = _RELS.search(detail)
    if rels and not dropped:
        files = [f.rsplit("/", 1)[1] for f in rels.group(1).split()]
        parts.append("rewrite=" + ",".join(files))
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
    for line in lines:
        if "desc: COMMIT" not in line and "desc: RESTORE_POINT" not in line:
            continue  # most records: skipped without a regular expression
        m = _RECORD.match(line)
        if not m:
            continue
        rmgr, xid, lsn_text, desc = m.groups()
        lsn = parse_lsn(lsn_text)
        if rmgr == "Transaction":
            c = _COMMIT.match(desc)
            if c:
                moment = datetime.fromisoformat(c.group(1)).replace(tzinfo=UTC)
                last_time = moment
                summary = commit_summary(c.group(2))
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
        [waldump, "--rmgr=Transaction", "--rmgr=XLOG", str(path)],
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
