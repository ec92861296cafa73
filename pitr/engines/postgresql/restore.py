"""Restoring a PostgreSQL cluster from a plan: base files, recovery settings, replay, checks.

The base (full, then differential) is extracted and verified into an empty directory; the
recovery settings go into postgresql.auto.conf with an explicit timeline, target, inclusive or
exclusive, and promote; ``recovery.signal`` is written last, so a half-restored directory can
never be started by accident. Replay is checked afterwards with SQL, never with a log line.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.files import EMPTIED_DIRS, extract_tar
from pitr.engines.postgresql.server import PgServer
from pitr.errors import ToolFailed
from pitr.plan import Plan
from pitr.targets import format_lsn
from pitr.timeutil import format_time
from pitr.transfer import VerifiedReader

log = logging.getLogger("pitr.postgresql")
PREFETCH_DIR = "pitr-prefetch"
MARKER = "# --- pitr recovery settings ---"


def owner_ids(user: str) -> tuple[int, int] | None:
    """uid/gid to give restored files when pitr runs as root for another user."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _extract(
    store: CatalogStore,
    backup: Backup,
    dest: Path,
    tablespaces: dict[str, Path],
    owner: tuple[int, int] | None,
) -> None:
    expected = {
        name: (values[0], values[2]) for name, values in backup.engine_meta.get("files", {}).items()
    }

    def one(obj: Any) -> None:
        with VerifiedReader(store.storage, obj) as reader:
            extract_tar(
                reader,  # type: ignore[arg-type]
                dest,
                tablespaces=tablespaces,
                owner=owner,
                expected=expected,
            )

    with ThreadPoolExecutor(max(1, len(backup.objects)), thread_name_prefix="restore") as pool:
        for future in [pool.submit(one, obj) for obj in backup.objects]:
            future.result()


def restore_base(
    store: CatalogStore,
    plan: Plan,
    dest: Path,
    *,
    owner: tuple[int, int] | None,
    tablespace_locations: dict[str, Path] | None = None,
) -> None:
    """Full, then differential, into ``dest``; then the backup_label of the last of them.
    Tablespaces go to ``tablespace_locations`` (linked from pg_tblspc) or, by default, into
    ``pg_tblspc/<oid>`` inside ``dest`` itself."""
    full, diff = plan.full, plan.differential
    assert full is not None
    last = diff or full
    locations = tablespace_locations or {}
    _extract(store, full, dest, locations, owner)
    if diff is not None:
        _extract(store, diff, dest, locations, owner)
        _remove_deleted(dest, diff)
    for name in last.engine_meta.get("directories", []):
        if name.split("/")[0] in EMPTIED_DIRS or name == "pg_tblspc":
            (dest / name).mkdir(mode=0o700, parents=True, exist_ok=True)
    (dest / "pg_wal" / "archive_status").mkdir(mode=0o700, parents=True, exist_ok=True)
    for oid, location in locations.items():
        link = dest / "pg_tblspc" / oid
        if not link.exists():
            link.symlink_to(location)
    _write(dest / "backup_label", last.engine_meta["backup_label"], owner)
    if owner is not None:
        for path in (dest, dest / "pg_wal", dest / "pg_wal" / "archive_status", dest / "pg_tblspc"):
            if path.exists():
                os.chown(path, *owner)
    dest.chmod(0o700)


def _remove_deleted(dest: Path, diff: Backup) -> None:
    """Files the full had that were gone when the differential was taken: every file now in
    ``dest`` came from the full or the differential, so what the differential does not list
    goes."""
    keep = set(diff.engine_meta.get("files", {}))
    for top, _dirs, files in os.walk(dest):
        for f in files:
            path = Path(top) / f
            name = path.relative_to(dest).as_posix()
            if name not in keep and not name.startswith("pg_wal/"):
                path.unlink()


def _write(path: Path, text: str, owner: tuple[int, int] | None) -> None:
    path.write_text(text)
    path.chmod(0o600)
    if owner is not None:
        os.chown(path, *owner)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pitr_command(config: str, instance: str) -> list[str]:
    """How PostgreSQL (as its own OS user) runs this pitr for restore_command."""
    exe = shutil.which("pitr")
    base = [exe] if exe else [sys.executable, "-m", "pitr"]
    return [*base, "--config", config] if config != "environment" else base


def recovery_settings(plan: Plan, restore_command: str) -> dict[str, str]:
    """The recovery parameters for ``plan``: always an explicit timeline and promote."""
    target = plan.target
    settings = {
        "restore_command": restore_command,
        "recovery_target_timeline": str(plan.timeline or "latest"),
        "recovery_target_action": "promote",
    }
    at_end = plan.stop is not None and plan.stop.at_end
    if target.kind == "time" and not at_end:
        settings["recovery_target_time"] = format_time(target.time) or ""
    elif target.kind == "xid":
        settings["recovery_target_xid"] = str(target.xid)
    elif target.kind == "lsn":
        settings["recovery_target_lsn"] = format_lsn(target.lsn or 0)
    elif target.kind == "restore_point":
        settings["recovery_target_name"] = target.name or ""
    if any(k.startswith("recovery_target_") and k not in ("recovery_target_timeline",
                                                          "recovery_target_action")
           for k in settings):  # fmt: skip
        settings["recovery_target_inclusive"] = "on" if target.inclusive else "off"
    return settings


def write_recovery(
    dest: Path,
    settings: dict[str, str],
    owner: tuple[int, int] | None,
    extra: dict[str, str] | None = None,
) -> None:
    """Append the settings to postgresql.auto.conf (read last), then recovery.signal."""
    auto = dest / "postgresql.auto.conf"
    existing = auto.read_text() if auto.exists() else ""
    existing = existing.split(MARKER)[0].rstrip("\n") + "\n"
    lines = [f"{k} = {_quote(v)}" for k, v in {**settings, **(extra or {})}.items()]
    _write(auto, existing + MARKER + "\n" + "\n".join(lines) + "\n", owner)
    _write(dest / "recovery.signal", "", owner)


def clear_recovery(server: PgServer) -> None:
    """Drop the recovery target settings once promoted (they would confuse a later reader)."""
    auto = server.datadir / "postgresql.auto.conf"
    text = auto.read_text()
    if MARKER not in text:
        return
    head, tail = text.split(MARKER, 1)
    kept = [
        ln for ln in tail.splitlines() if ln.strip() and not ln.startswith(("recovery_target",))
    ]
    auto.write_text(head.rstrip("\n") + "\n" + MARKER + "\n" + "\n".join(kept) + "\n")


@dataclass(frozen=True)
class Reached:
    """What the recovered server reports about where replay ended."""

    lsn: str | None
    last_commit: datetime | None
    timeline: int
    xid_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"lsn": self.lsn, "xid": None, "gtid": None, "timeline": self.timeline}


def check_reached(server: PgServer, plan: Plan, expected_end: int | None) -> Reached:
    """After promotion: did replay really stop where the target says?"""
    rows = server.query(
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), "
        "(SELECT timeline_id FROM pg_control_checkpoint())"
    )
    lsn_text, last_commit, timeline = rows[0]
    reached = Reached(lsn_text, last_commit, int(timeline))
    target = plan.target
    problems: list[str] = []
    if target.kind == "xid":
        status = _xid_status(server, target.xid or 0)
        reached = Reached(lsn_text, last_commit, int(timeline), status)
        wanted = "committed" if target.inclusive else "not committed"
        if (status == "committed") != target.inclusive:
            problems.append(f"transaction {target.xid} is {status}, expected {wanted}")
    elif target.kind == "time" and last_commit is not None and target.time is not None:
        late = last_commit > target.time if target.inclusive else last_commit >= target.time
        if late:
            problems.append(f"the last replayed commit ({last_commit}) is after the target")
    elif target.kind in ("lsn", "restore_point", "latest") and lsn_text:
        from pitr.targets import parse_lsn

        replayed = parse_lsn(lsn_text)
        goal = target.lsn if target.kind == "lsn" else expected_end
        if goal is not None and target.inclusive and replayed < goal:
            problems.append(f"replay ended at {lsn_text}, before {format_lsn(goal)}")
    if problems:
        raise ToolFailed(f"recovery did not reach the target {target.describe()}: {problems[0]}")
    return reached


def _xid_status(server: PgServer, xid: int) -> str:
    import psycopg

    try:
        rows = server.query("SELECT pg_xact_status(%s::text::xid8)", str(xid))
    except psycopg.Error:  # "in the future": never assigned on this timeline
        return "not committed"
    status = rows[0][0]
    return "committed" if status == "committed" else "not committed"


def spool_of(dest: Path) -> Path:
    return dest / PREFETCH_DIR


def restore_command_for(config: str, instance: str, dest: Path) -> str:
    argv = [*pitr_command(config, instance), "wal-fetch", "--quiet", "--instance", instance,
            "--spool", str(spool_of(dest)), "%f", "%p"]  # fmt: skip
    return " ".join(shlex.quote(a) if a not in ("%f", "%p") else a for a in argv)


def segments_end(plan: Plan) -> int | None:
    """Where replay of ``plan`` must at least get to (the start of its last segment)."""
    segs: Sequence[Any] = plan.segments
    return segs[-1].start_key if segs else None
