"""Text for people: plans, listings, health. JSON output comes from each object's to_dict()."""

from __future__ import annotations

from typing import Any

from pitr.plan import Plan


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


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
            log["last"],
            log["logs"],
            human_bytes(log["bytes"]),
            log["last_commit"] or "",
        ]
        for log in listing["logs"]
    ]


def inspect_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for f in result["files"]:
        state = "in use" if f.get("in_use") else "truncated" if f.get("truncated") else "closed"
        count = len(f.get("transactions", []) or f.get("entries", []))
        rows.append(
            [
                f["path"],
                f["kind"],
                f.get("first_time") or "",
                f.get("last_time") or "",
                count,
                state,
            ]
        )
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
