"""``restore`` (a new cluster beside the running one) and ``recover`` (the instance, in place).

In place, the base is restored *beside* the data directory while the instance still runs
(so nothing is stopped until every backup object has been read back intact); then the newest
WAL is secured, the instance stopped, its data directory renamed aside (never deleted), the
restored one renamed into place, and recovery runs. A run interrupted half-way can simply be
run again: a directory pitr was restoring into carries a marker and is redone.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.restore import (
    check_reached,
    clear_recovery,
    owner_ids,
    recovery_settings,
    restore_base,
    restore_command_for,
    segments_end,
    spool_of,
    write_recovery,
)
from pitr.engines.postgresql.server import PgServer
from pitr.errors import NotRecoverable, PitrError, PreconditionFailed, ToolFailed
from pitr.executor import Prefetcher
from pitr.plan import Plan
from pitr.planning import make_plan
from pitr.targets import Target
from pitr.timeutil import compact_id_time, format_time, utcnow

log = logging.getLogger("pitr.postgresql")
IN_PROGRESS = "pitr-restore-in-progress"
SECURE_WAIT = 120.0


@dataclass(frozen=True)
class Recovered:
    instance: str
    plan: Plan
    datadir: Path
    reached: dict[str, Any]
    point_in_time: datetime | None
    previous_datadir: Path | None
    port: int | None
    status: str = "ACTIVE"

    def to_dict(self) -> dict[str, Any]:
        return {
            "recovery": {
                "instance": self.instance,
                "datastore": "postgresql",
                "status": self.status,
                "recovered_from_backup": self.plan.full.id if self.plan.full else None,
                "differential": self.plan.differential.id if self.plan.differential else None,
                "point_in_time": format_time(self.point_in_time),
                "reached": self.reached,
                "previous_datadir": str(self.previous_datadir) if self.previous_datadir else None,
                "datadir": str(self.datadir),
                "port": self.port,
                "timeline": self.reached.get("timeline"),
            }
        }


def _require(plan: Plan) -> None:
    if not plan.recoverable:
        raise NotRecoverable(
            f"not recoverable: {plan.problems[0]}",
            hint=f"recoverable window: {plan.window.describe()}; nothing was changed",
        )


def _prepare(store: CatalogStore, plan: Plan, dest: Path, owner: Any, extra: dict[str, str],
             config: str, tablespaces: dict[str, Path] | None = None) -> None:  # fmt: skip
    (dest / IN_PROGRESS).write_text(format_time(utcnow()) or "")
    restore_base(store, plan, dest, owner=owner, tablespace_locations=tablespaces)
    command = restore_command_for(config, store.instance, dest)
    write_recovery(dest, recovery_settings(plan, command), owner, extra)


def _config_files(plan: Plan, dest: Path, owner: Any) -> None:
    """Clusters whose configuration lives outside the data directory (Debian's
    /etc/postgresql) get the files recorded at backup time, made to point at ``dest``: a copy
    must never open the original's data directory."""
    last = plan.differential or plan.full
    assert last is not None
    files: dict[str, str] = last.engine_meta.get("config_files", {})
    if not files or (dest / "postgresql.conf").exists():
        return
    (dest / "conf.d").mkdir(mode=0o700, exist_ok=True)
    files = dict(files)
    files["postgresql.conf"] = files.get("postgresql.conf", "") + (
        f"\n# pitr: this restored copy runs from its own directory\n"
        f"data_directory = '{dest}'\nhba_file = '{dest}/pg_hba.conf'\n"
        f"ident_file = '{dest}/pg_ident.conf'\nexternal_pid_file = ''\n"
    )
    for name, text in files.items():
        path = dest / name
        path.write_text(text)
        path.chmod(0o600)
    if owner is not None:
        import os

        for path in (dest / "conf.d", *(dest / name for name in files)):
            os.chown(path, *owner)


def _replay(server: PgServer, store: CatalogStore, plan: Plan, owner: Any) -> dict[str, Any]:
    spool = spool_of(server.datadir)
    with Prefetcher(store.storage, plan.segments, spool, owner=owner) as prefetcher:
        server.start()
        server.wait_promoted()
    if prefetcher.errors:
        log.warning("prefetch problems: %s", prefetcher.errors[0].message)
    reached = check_reached(server, plan, segments_end(plan))
    clear_recovery(server)
    shutil.rmtree(spool, ignore_errors=True)
    (server.datadir / IN_PROGRESS).unlink(missing_ok=True)
    return {"lsn": reached.lsn, "xid": None, "gtid": None, "timeline": reached.timeline,
            "last_commit": format_time(reached.last_commit)}  # fmt: skip


def restore_beside(
    store: CatalogStore,
    server: PgServer,
    target: Target,
    dest: Path,
    port: int | None,
    config: str,
) -> Recovered:
    plan = make_plan(store, target).plan
    _require(plan)
    if dest.exists() and any(dest.iterdir()):
        raise PreconditionFailed(f"{dest} is not empty: restore needs a new or empty directory")
    created = not dest.exists()
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = owner_ids(server.os_user)
    try:
        extra = {"archive_mode": "off"} | ({"port": str(port)} if port else {})
        _prepare(store, plan, dest, owner, extra, config)
        _config_files(plan, dest, owner)
    except BaseException:
        _clean(dest, created)
        raise
    if port is None:
        return Recovered(store.instance, plan, dest, {}, None, None, None, status="RESTORED")
    restored = PgServer(_plain(server), datadir=str(dest), port=port, env=server.env)
    reached = _replay(restored, store, plan, owner)
    return Recovered(store.instance, plan, dest, reached, _last_commit(reached), None, port)


def _plain(server: PgServer) -> Any:
    """The instance's settings without its service commands (they start the original)."""
    from dataclasses import replace

    return replace(server.settings, start_command=None, stop_command=None)


def _clean(dest: Path, created: bool) -> None:
    """Remove what pitr wrote into ``dest`` (the directory itself only if pitr created it)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
    else:
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _last_commit(reached: dict[str, Any]) -> datetime | None:
    text = reached.get("last_commit")
    return datetime.fromisoformat(text) if text else None


def secure_newest_wal(server: PgServer, store: CatalogStore) -> str | None:
    """Switch to a new WAL segment and wait until the finished one is in the repository, so
    the mistake's WAL can be replayed. Returns its name (None when the instance is down)."""
    if not server.is_running():
        return None
    rows = server.query("SELECT pg_walfile_name(pg_switch_wal()), now()")
    name, switched = str(rows[0][0]), rows[0][1]
    stream = name[:8]
    deadline = time.monotonic() + SECURE_WAIT
    while store.segment_index(stream, name) is None:
        failed = server.query(
            "SELECT last_failed_wal, failed_count FROM pg_stat_archiver "
            "WHERE last_failed_time >= %s AND last_failed_wal >= %s",
            switched,
            name,
        )
        if failed:
            raise PreconditionFailed(
                f"archive_command fails for {failed[0][0]} ({failed[0][1]} failures so far); "
                "nothing was changed",
                hint="see PostgreSQL's log for the archive_command error",
            )
        if time.monotonic() > deadline:
            raise PreconditionFailed(
                f"WAL segment {name} did not reach the repository within {SECURE_WAIT:g} s; "
                "nothing was changed",
                hint="check archive_command ('pitr wal-push %p') and pg_stat_archiver",
            )
        time.sleep(0.3)
    log.info("newest WAL secured in the repository: %s", name)
    return name


def recover_in_place(
    store: CatalogStore, server: PgServer, target: Target, config: str
) -> Recovered:
    datadir = server.datadir
    staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
    _require(make_plan(store, target).plan)  # refuse early, before anything happens
    secure_newest_wal(server, store)
    plan = make_plan(store, target).plan  # again: the newest WAL may hold the target
    _require(plan)
    owner = owner_ids(server.os_user)
    if staging.exists():
        if not (staging / IN_PROGRESS).exists():
            raise PreconditionFailed(f"{staging} exists and was not made by pitr; move it away")
        shutil.rmtree(staging)  # an earlier interrupted run of ours
    staging.mkdir(mode=0o700)
    try:
        _prepare(store, plan, staging, owner, {}, config)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    server.stop()
    aside: Path | None = None
    if (datadir / IN_PROGRESS).exists():
        shutil.rmtree(datadir)  # our own half-recovered directory from an interrupted run
    elif datadir.exists():
        aside = datadir.with_name(f"{datadir.name}.pitr-{compact_id_time(utcnow())}")
        datadir.rename(aside)
        log.info("data directory set aside as %s", aside)
    staging.rename(datadir)
    try:
        reached = _replay(server, store, plan, owner)
        _wait_for_history(store, int(reached["timeline"]))
    except PitrError as exc:
        kept = f"; the replaced data directory is kept at {aside}" if aside else ""
        raise ToolFailed(f"recovery failed: {exc.message}{kept}", hint=exc.hint) from exc
    return Recovered(store.instance, plan, datadir, reached, _last_commit(reached), aside,
                     server.port)  # fmt: skip


def _wait_for_history(store: CatalogStore, timeline: int) -> None:
    """The new timeline's history must be archived before a later recovery can follow it."""
    name = f"{timeline:08X}.history"
    deadline = time.monotonic() + SECURE_WAIT
    while not store.storage.exists(store.layout.history_index(name)):
        if time.monotonic() > deadline:
            log.warning("%s has not reached the repository yet: check archive_command", name)
            return
        time.sleep(0.3)
