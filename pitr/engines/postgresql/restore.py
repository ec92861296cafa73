"""Restoring a PostgreSQL cluster from a plan: base files, recovery settings, replay, checks.

The base (full, then differential, then block-level incrementals: ``reassemble``) is
extracted and verified into an empty directory; the recovery settings go into
postgresql.auto.conf with an explicit timeline, target, inclusive or
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
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.domain.positions import format_lsn, parse_lsn
from pitr.domain.timeutil import format_time
from pitr.engines.postgresql.files import EMPTIED_DIRS, extract_tar
from pitr.engines.postgresql.pagemap import Source
from pitr.engines.postgresql.reassemble import reassemble
from pitr.engines.postgresql.server import PgServer
from pitr.errors import PitrError, ToolFailed, VerificationFailed
from pitr.planner.plan import Plan
from pitr.storage.transfer import VerifiedReader

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
    skip: frozenset[str] = frozenset(),
    holes: Source | None = None,
) -> None:
    expected = {
        name: (values[0], values[2]) for name, values in backup.engine_meta.get("files", {}).items()
    }

    def one(obj: Any) -> None:
        with VerifiedReader(store.storage, obj) as reader:
            try:
                extract_tar(
                    reader,  # type: ignore[arg-type]
                    dest,
                    tablespaces=tablespaces,
                    owner=owner,
                    expected=expected,
                    skip=skip,
                    holes=holes.skip if holes else None,
                    block=holes.block if holes else 8192,
                )
            except VerificationFailed:
                raise
            except (PitrError, tarfile.TarError, EOFError):
                # Garbage in the stream (an uncompressed object decompresses whatever its
                # bytes): when the object itself does not verify, that is the error to report.
                reader.finish()
                raise

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
    """Full, then differential and incrementals, into ``dest``; then the backup_label of the
    last of them.
    Tablespaces go to ``tablespace_locations`` (linked from pg_tblspc) or, by default, into
    ``pg_tblspc/<oid>`` inside ``dest`` itself."""
    full, diff = plan.full, plan.differential
    assert full is not None
    last = plan.last_backup or full
    locations = tablespace_locations or {}
    if plan.increments:  # block-level incrementals: every block from the one link holding it
        chain = [b for b in (full, diff, *plan.increments) if b is not None]

        def extract(backup: Backup, skip: frozenset[str], source: Source) -> None:
            _extract(store, backup, dest, locations, owner, skip, source)

        reassemble(store, chain, dest, locations, owner, extract)
    else:
        _extract(store, full, dest, locations, owner, skip=superseded(full, diff))
        if diff is not None:
            _extract(store, diff, dest, locations, owner)
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


def superseded(full: Backup, diff: Backup | None) -> frozenset[str]:
    """Files of the full not to write: those the differential sent again (its record differs:
    it has its own copy) and those gone by the time it was taken (no record). Every file is
    written once, from the backup holding its newest copy."""
    if diff is None:
        return frozenset()
    newer: dict[str, Any] = diff.engine_meta.get("files", {})
    return frozenset(
        name
        for name, record in full.engine_meta.get("files", {}).items()
        if newer.get(name) != record
    )


def _write(path: Path, text: str, owner: tuple[int, int] | None) -> None:
    path.write_text(text)
    path.chmod(0o600)
    if owner is not None:
        os.chown(path, *owner)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pitr_command(config: str, instance: str) -> list[str]:
    """How PostgreSQL (as its own OS user, in the data directory) runs this pitr for
    restore_command: the same installation (the script beside this interpreter, not whatever
    ``pitr`` comes first on PATH) and the same configuration file, by absolute path — a
    relative ``--config`` would be looked up in the data directory."""
    beside = Path(sys.executable).parent / "pitr"
    exe = str(beside) if os.access(beside, os.X_OK) else shutil.which("pitr")
    base = [exe] if exe else [sys.executable, "-m", "pitr"]
    if config == "environment":
        return base
    return [*base, "--config", str(Path(config).absolute())]


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


def check_reached(server: PgServer, plan: Plan) -> Reached:
    """After promotion: did replay really get where the plan says — no further (a commit
    after the target) and no shorter (WAL that could not be read ends recovery early, and
    without a recovery target PostgreSQL then promotes as if it were the end)?"""
    rows = server.query(
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), "
        "(SELECT timeline_id FROM pg_control_checkpoint())"
    )
    lsn_text, last_commit, timeline = rows[0]
    reached = Reached(lsn_text, last_commit, int(timeline))
    replayed = parse_lsn(lsn_text) if lsn_text else None
    target = plan.target
    problems: list[str] = []
    at_end = plan.stop is not None and plan.stop.at_end
    if target.kind == "xid":
        status = _xid_status(server, target.xid or 0)
        reached = Reached(lsn_text, last_commit, int(timeline), status)
        wanted = "committed" if target.inclusive else "not committed"
        if (status == "committed") != target.inclusive:
            problems.append(f"transaction {target.xid} is {status}, expected {wanted}")
    elif target.kind == "time" and not at_end:
        if last_commit is not None and target.time is not None:
            late = last_commit > target.time if target.inclusive else last_commit >= target.time
            if late:
                problems.append(f"the last replayed commit ({last_commit}) is after the target")
    elif (
        target.kind == "lsn"
        and target.inclusive
        and target.lsn is not None
        and (replayed is None or replayed < target.lsn)
    ):
        problems.append(f"replay ended at {lsn_text}, before {format_lsn(target.lsn or 0)}")
    # A record that must have been replayed: the restore point, or with no target (latest, or
    # a time after every archived commit) the last commit archived on the way.
    must: int | None = None
    if target.kind == "restore_point" and plan.stop is not None:
        must = plan.stop.key
    elif at_end:
        keys = [s.last_key for s in plan.segments if s.last_key is not None]
        must = max(keys) if keys else None
    if must is not None and (replayed is None or replayed <= must):
        problems.append(
            f"replay ended at {lsn_text}, before the record at {format_lsn(must)} "
            "(archived WAL could not be read?)"
        )
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


def _shell(word: str) -> str:
    """``word`` quoted for the shell PostgreSQL runs restore_command with, ``%`` doubled
    (PostgreSQL would expand ``%f``/``%p``/``%r`` inside a path)."""
    return shlex.quote(word).replace("%", "%%")


def restore_command_for(config: str, instance: str, dest: Path) -> str:
    """A file the prefetcher has ready is moved into place by the shell (a rename in the
    same file system); anything else is ``pitr wal-fetch``, which also fetches what the
    prefetcher has not got yet. Starting pitr costs far more than replaying a segment."""
    spool = _shell(str(spool_of(dest)))
    argv = [*pitr_command(config, instance), "wal-fetch", "--quiet", "--instance", instance,
            "--spool", str(spool_of(dest))]  # fmt: skip
    fetch = " ".join(_shell(a) for a in argv) + " %f %p"
    return f"{{ [ -f {spool}/%f ] && mv -f {spool}/%f %p; }} || {fetch}"
