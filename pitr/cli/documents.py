"""Every ``--json`` document (docs/json.md), built from what the commands return: the one place
their keys are spelled. ``tests/unit/test_json_docs*.py`` compare each with docs/json.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pitr.domain.positions import format_lsn
from pitr.domain.timeutil import format_time, from_microseconds
from pitr.errors import error_dict
from pitr.planner import window, windows_of

if TYPE_CHECKING:
    from pitr.catalog import Catalog
    from pitr.catalog.model import Backup
    from pitr.catalog.segments import SegmentRun
    from pitr.commands.expire import Expired
    from pitr.commands.inspect import BinlogFile, HistoryFile, Inspected, WalFile
    from pitr.commands.status import Health
    from pitr.commands.verify import Verified
    from pitr.domain.checks import CheckItem, CheckReport
    from pitr.engines.base import Archived, Event
    from pitr.engines.recovery import Recovered
    from pitr.planner.plan import Plan


def milliseconds(item: CheckItem) -> float | None:
    return None if item.seconds is None else round(item.seconds * 1000, 1)


def check(report: CheckReport) -> dict[str, Any]:
    checks = [
        {"name": i.name, "ok": i.ok, "detail": i.detail, "ms": milliseconds(i)}
        for i in report.items
    ]
    doc: dict[str, Any] = {"ok": report.ok, "checks": checks}
    if report.error is not None:
        doc["error"] = error_dict(report.error)
    return doc


def stream_coverage(run: SegmentRun, open_log: str | None = None) -> dict[str, Any]:
    """A stream's logs in one line: first and last, how many, how big, which commit times;
    ``open_log``: its last is the open log ``archive --follow`` ships."""
    names = run.column("name")
    lows = [v for v in run.column("min_commit") if v is not None]
    highs = [v for v in run.column("max_commit") if v is not None]
    return {
        "stream": run.stream,
        "first": names[0],
        "last": names[-1],
        "logs": len(names),
        "bytes": sum(run.column("object_size")),
        "first_commit": format_time(from_microseconds(min(lows) if lows else None)),
        "last_commit": format_time(from_microseconds(max(highs) if highs else None)),
        "open": open_log,
    }


def listing(catalog: Catalog, opened: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``pitr list --json``: backups, log coverage per stream, the recoverable window (and
    the window of each timeline or GTID domain); ``opened``: stream -> the open log counted
    as its last (``openlogs.opened``)."""
    return {
        "instance": catalog.instance,
        "datastore": catalog.engine,
        "backups": [
            {
                "id": b.id,
                "type": b.type,
                "parent": b.parent,
                "start": format_time(b.start_time),
                "end": format_time(b.end_time),
                "bytes": b.bytes,
                "raw_bytes": b.raw_bytes,
                "stream": b.stream,
                "system": b.system,
                "server_major": b.server_major,
                "start_position": b.start,
                "end_position": b.end,
            }
            for b in catalog.backups
        ],
        "logs": [
            stream_coverage(run, (opened or {}).get(stream))
            for stream, run in sorted(catalog.streams.items())
            if len(run)
        ],
        "window": window(catalog).to_dict(),
        "windows": [w.to_dict() for w in windows_of(catalog)],
    }


def plan(result: Plan) -> dict[str, Any]:
    return result.to_dict()


def verify(result: Verified) -> dict[str, Any]:
    return {
        "verified": result.intact,
        "objects": result.objects,
        "bytes": result.bytes,
        "failed": [{"key": f.key, "problem": f.problem} for f in result.failures],
        "contents_checked": result.contents_checked,
    }


def expire(result: Expired) -> dict[str, Any]:
    expiry = result.expiry
    return {
        "dry_run": result.dry_run,
        "kept": [b.id for b in expiry.keep],
        "expired_backups": [b.id for b in expiry.backups],
        "expired_logs": [s.name for s in expiry.segments],
        "unfinished_backups": sorted(expiry.orphans),
        "bytes": expiry.bytes,
    }


def status(health: Health) -> dict[str, Any]:
    return {
        "status": health.state,
        "checks": [
            {"name": c.name, "status": c.state, "detail": c.detail, "age_seconds": c.age_seconds}
            for c in health.checks
        ],
        "window": health.window.to_dict(),
    }


def backup(result: Backup) -> dict[str, Any]:
    return {
        "backup": {
            "id": result.id,
            "type": result.type,
            "parent": result.parent,
            "start": result.start,
            "end": result.end,
            "start_time": format_time(result.start_time),
            "end_time": format_time(result.end_time),
            "bytes": result.bytes,
            "raw_bytes": result.raw_bytes,
        }
    }


def wal_push(name: str, archived: bool) -> dict[str, Any]:
    return {"file": name, "archived": archived}


def wal_fetch(name: str, found: bool) -> dict[str, Any]:
    return {"file": name, "found": found}


def recovery(result: Recovered) -> dict[str, Any]:
    """``recover`` and ``restore``: one ``recovery`` object for every engine; PostgreSQL adds
    ``timeline``, MariaDB/MySQL ``previous_binlogs``."""
    postgresql = result.plan.datastore == "postgresql"
    doc: dict[str, Any] = {
        "instance": result.instance,
        "datastore": result.plan.datastore,
        "status": result.status,
        "recovered_from_backup": result.plan.full.id if result.plan.full else None,
        "differential": result.plan.differential.id if result.plan.differential else None,
        "increments": [b.id for b in result.plan.increments],
        "point_in_time": format_time(result.point_in_time),
        "reached": result.reached,
        "previous_datadir": _text(result.previous_datadir),
    }
    if not postgresql:
        doc["previous_binlogs"] = _text(result.previous_binlogs)
    doc |= {"datadir": str(result.datadir), "port": result.port}
    if postgresql:
        doc["timeline"] = result.reached.get("timeline")
    return {"recovery": doc}


def _text(path: object | None) -> str | None:
    return str(path) if path else None


def archive(result: Archived) -> dict[str, Any]:
    """The counts; the keys an engine leaves unset (binlog files and gaps, ``--follow``'s
    stop and spool) are left out."""
    doc: dict[str, Any] = {"archived": result.archived, "already_archived": result.already_archived}
    optional: dict[str, object] = {"files": result.files, "gaps": result.gaps}
    optional |= {"stopped_by": result.stopped_by, "spool": result.spool}
    return doc | {key: value for key, value in optional.items() if value is not None}


def events(found: Sequence[Event]) -> dict[str, Any]:
    return {"events": [event(e) for e in found]}


def event(e: Event) -> dict[str, Any]:
    """PostgreSQL's with the xid, the LSN and the timeline; MariaDB's and MySQL's with the
    GTID, the end and the stream (what ``--grep`` searches: commands/events.py ``searched``)."""
    time = format_time(e.time)
    if e.binlog:
        return {
            "time": time,
            "gtid": e.gtid,
            "xid": None,
            "position": e.position,
            "end": e.end,
            "lsn": None,
            "log": e.log,
            "stream": e.stream,
            "summary": e.summary,
        }
    return {
        "time": time,
        "xid": e.xid,
        "gtid": None,
        "lsn": e.position,
        "position": e.position,
        "log": e.log,
        "timeline": e.timeline,
        "summary": e.summary,
    }


def inspect(files: Sequence[Inspected]) -> dict[str, Any]:
    """``{"files": [...]}``: an entry per file, in order, with what its kind knows."""
    from pitr.commands.inspect import BinlogFile, WalFile

    entries = []
    for f in files:
        if isinstance(f, BinlogFile):
            entries.append(binlog_file(f))
        elif isinstance(f, WalFile):
            entries.append(wal_file(f))
        else:
            entries.append(history_file(f))
    return {"files": entries}


def binlog_file(f: BinlogFile) -> dict[str, Any]:
    """The index as the catalog keeps it; each transaction's ``position`` is its ``start``."""
    doc = {"path": f.path, **f.index.to_dict(), "kind": f.kind}
    for transaction in doc["transactions"]:
        transaction["position"] = transaction["start"]
    return doc


def wal_file(f: WalFile) -> dict[str, Any]:
    s, header = f.segment, f.segment.header
    return {
        "path": f.path,
        "kind": f.kind,
        "server_version": f"PostgreSQL {header.version}",
        "checksum": "crc32c",
        "timeline": f.timeline,
        "page_timeline": header.timeline,  # a timeline's first segment has its parent's
        "start_lsn": format_lsn(header.pageaddr),
        "system_identifier": str(header.system_id),
        "segment_size": header.segment_size,
        "first_time": format_time(s.first_time),
        "last_time": format_time(s.last_time),
        "in_use": False,
        "truncated": s.truncated,
        "end_lsn": format_lsn(s.end_lsn),
        "end_reason": s.end_reason,
        "switched": s.switched,
        "records": s.records,
        "transactions": [
            {
                "gtid": None,
                "xid": x.xid,
                "time": format_time(x.time),
                "position": format_lsn(x.lsn),
                "end_lsn": format_lsn(x.end_lsn),
                "status": x.status,
                "prepared": x.prepared,
            }
            for x in s.transactions
        ],
        "restore_points": [
            {"name": p.name, "time": format_time(p.time), "position": format_lsn(p.lsn)}
            for p in s.restore_points
        ],
        "name_matches": f.name_matches,
    }


def history_file(f: HistoryFile) -> dict[str, Any]:
    entries = [
        {"parent_timeline": e.parent, "switch_lsn": format_lsn(e.switch_lsn), "reason": e.reason}
        for e in f.entries
    ]
    return {"path": f.path, "kind": f.kind, "timeline": f.timeline, "entries": entries}
