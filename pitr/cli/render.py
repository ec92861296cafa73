"""Text for people, every command's: lines and table rows from what the commands return (the
JSON documents are ``pitr.cli.documents``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pitr.domain.sizes import human_bytes
from pitr.domain.timeutil import format_time

if TYPE_CHECKING:
    from pitr.catalog.model import Backup
    from pitr.commands.expire import Expired
    from pitr.commands.inspect import Inspected
    from pitr.commands.status import Health
    from pitr.commands.verify import Verified
    from pitr.domain.checks import CheckReport
    from pitr.engines.base import Event
    from pitr.planner.plan import Plan


#: Table columns, by command.
CHECK_COLUMNS = ["check", "result", "ms", "detail"]
BACKUP_COLUMNS = ["backup", "type", "parent", "start", "end", "size", "system", "version"]
LOG_COLUMNS = ["stream", "first log", "last log", "logs", "size", "last commit"]
EVENT_COLUMNS = ["time", "xid/gtid", "position", "log", "summary"]
INSPECT_COLUMNS = ["file", "kind", "first", "last", "transactions", "state"]


def plan_text(plan: Plan) -> str:
    verdict = "recoverable" if plan.recoverable else "NOT RECOVERABLE"
    lines = [
        f"Plan for {plan.instance} ({plan.datastore}), target {plan.target.describe()}: {verdict}"
    ]
    for n, step in enumerate(plan.steps, 1):
        if step.action == "restore_full" and step.backup is not None:
            lines.append(f"  {n}. restore full backup {step.backup.id} ({human_bytes(step.bytes)})")
        elif step.action == "apply_diff" and step.backup is not None:
            lines.append(f"  {n}. apply differential {step.backup.id} ({human_bytes(step.bytes)})")
        elif step.action == "apply_incr" and step.backup is not None:
            lines.append(f"  {n}. apply incremental {step.backup.id} ({human_bytes(step.bytes)})")
        else:
            logs = step.segments
            span = f"{logs[0].name} to {logs[-1].name}" if len(logs) > 1 else logs[0].name
            timeline = f" on timeline {plan.timeline}" if plan.timeline else ""
            lines.append(
                f"  {n}. replay {len(logs)} log(s) {span} ({human_bytes(step.bytes)}), "
                f"from {step.start} to {step.stop}{timeline}"
            )
    lines += [f"  problem: {p}" for p in plan.problems]
    lines += [f"  note: {n}" for n in plan.notes]
    lines.append(f"Recoverable window: {plan.window.describe()}")
    if len(plan.windows) > 1:
        lines += [f"  {w.scope} {w.id}: {w.window.describe()}" for w in plan.windows]
    return "\n".join(lines)


def backups_rows(listing: dict[str, Any]) -> list[list[Any]]:
    """One row per backup; the system and the server's major version tell apart the clusters
    before and after a pg_upgrade."""
    return [
        [
            *(b["id"], b["type"], b["parent"] or "", b["start"], b["end"]),
            *(human_bytes(b["bytes"]), b["system"], b["server_major"] or ""),
        ]
        for b in listing["backups"]
    ]


def logs_rows(listing: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            log["stream"],
            log["first"],
            log["last"] + (" (open)" if log.get("open") else ""),
            log["logs"],
            human_bytes(log["bytes"]),
            log["last_commit"] or "",
        ]
        for log in listing["logs"]
    ]


def inspect_rows(files: Sequence[Inspected]) -> list[list[Any]]:
    """A file per row: its first and last transaction time, how many transactions (entries,
    for a timeline history), and whether the server had it open or it is torn."""
    from pitr.commands.inspect import BinlogFile, HistoryFile

    rows: list[list[Any]] = []
    for f in files:
        if isinstance(f, HistoryFile):
            rows.append([f.path, f.kind, "", "", len(f.entries), "closed"])
            continue
        facts = f.index if isinstance(f, BinlogFile) else f.segment
        in_use = isinstance(f, BinlogFile) and f.index.in_use
        state = "in use" if in_use else "truncated" if facts.truncated else "closed"
        first, last = format_time(facts.first_time) or "", format_time(facts.last_time) or ""
        rows.append([f.path, f.kind, first, last, len(facts.transactions), state])
    return rows


def window_lines(listing: dict[str, Any]) -> list[str]:
    """``pitr list``'s recoverable window, then each timeline's or domain's when several."""
    window = listing["window"]
    lines = [f"Recoverable window: {window['earliest']} to {window['latest']}"]
    if len(listing["windows"]) > 1:
        for w in listing["windows"]:
            scope = next(k for k in ("timeline", "domain", "source") if k in w)
            lines.append(f"  {scope} {w[scope]}: {w['earliest']} to {w['latest']}")
    return lines


def recovery_text(result: dict[str, Any]) -> str:
    """``recover`` and ``restore``, from their document."""
    r = result["recovery"]
    lines = [f"{r['instance']}: {r['status']} in {r['datadir']}"]
    if r.get("port"):
        lines.append(f"  running on port {r['port']}, out of recovery")
    diff = f" + differential {r['differential']}" if r.get("differential") else ""
    diff += "".join(f" + incremental {i}" for i in r.get("increments") or ())
    lines.append(f"  from backup {r['recovered_from_backup']}{diff}")
    if r.get("point_in_time"):
        lines.append(f"  last transaction applied at {r['point_in_time']}")
    if r.get("previous_datadir"):
        lines.append(f"  previous data directory kept at {r['previous_datadir']}")
    return "\n".join(lines)


def check_rows(report: CheckReport) -> list[list[Any]]:
    from pitr.cli.documents import milliseconds

    return [
        [i.name, "ok" if i.ok else "FAILED", milliseconds(i) or "", i.detail] for i in report.items
    ]


def verify_text(result: Verified) -> str:
    lines = [f"FAILED {f.problem}" for f in result.failures]
    lines.append(f"{result.intact} of {result.objects} objects verified intact")
    return "\n".join(lines)


def expire_text(result: Expired) -> str:
    expiry = result.expiry
    verb = "would delete" if result.dry_run else "deleted"
    return (
        f"{verb} {len(expiry.backups)} backup(s), {len(expiry.segments)} log(s) "
        f"({human_bytes(expiry.bytes)}) and {len(expiry.orphans)} unfinished backup(s); "
        f"kept {len(expiry.keep)} backup(s)"
    )


def status_text(health: Health) -> str:
    summary = "; ".join(f"{c.name} {c.state}: {c.detail}" for c in health.checks)
    return f"PITR {health.state} - {summary}"


def rebuild_text(counts: dict[str, int]) -> str:
    return f"rebuilt: {counts['backups']} backup(s), {counts['logs']} log(s)"


def backup_text(result: Backup) -> str:
    return (
        f"backup {result.id} ({result.type}) published: {human_bytes(result.raw_bytes)} "
        f"stored as {human_bytes(result.bytes)}, consistent at {result.end}"
    )


def archive_text(result: dict[str, Any]) -> str:
    """``archive``, from its document."""
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items())


def events_rows(found: Sequence[Event]) -> list[list[Any]]:
    return [[format_time(e.time), e.xid or e.gtid, e.position, e.log, e.summary] for e in found]
