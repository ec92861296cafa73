"""``restore`` (a new cluster beside the running one) and ``recover`` (the instance, in place).

In place, the base is restored *beside* the data directory while the instance still runs
(so nothing is stopped until every backup object has been read back intact); then the newest
WAL is secured, the instance stopped, its data directory renamed aside (never deleted), the
restored one renamed into place, and recovery runs. A run interrupted half-way can simply be
run again: a directory pitr was restoring into carries a marker and is redone.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.catalog.store import CatalogStore
from pitr.domain.timeutil import compact_id_time, format_time, utcnow
from pitr.engines.base import Replan
from pitr.engines.ports import check_port
from pitr.engines.postgresql.guards import space_needed, verify_wal
from pitr.engines.postgresql.prefetch import Prefetcher
from pitr.engines.postgresql.restore import (
    check_reached,
    clear_recovery,
    owner_ids,
    recovery_settings,
    restore_base,
    restore_command_for,
    spool_of,
    write_recovery,
)
from pitr.engines.postgresql.server import PgServer
from pitr.engines.postgresql.versions import backup_major, require_tool_major
from pitr.engines.recovery import Recovered, clean, require_recoverable
from pitr.engines.space import (
    nearly_full,
    ran_out_of_space,
    removed_note,
    require_space,
    space_error,
)
from pitr.errors import Interrupted, PitrError, PreconditionFailed, ToolFailed
from pitr.planner.plan import Plan

log = logging.getLogger("pitr.postgresql")
IN_PROGRESS = "pitr-restore-in-progress"
PREVIOUS = "previous datadir: "  # in the IN_PROGRESS marker, once the instance's is set aside
SECURE_WAIT = 120.0
SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1


def _require_major(server: PgServer, plan: Plan, tools: list[str]) -> None:
    """Only programs of the backup's major version restore it (exit 6, nothing changed)."""
    full = plan.full
    major = backup_major(full) if full is not None else None
    if full is None or major is None:
        return
    for name in tools:
        require_tool_major(server.tool(name), major, f"backup {full.id}", server.settings.bindir)


def _prepare(
    store: CatalogStore,
    plan: Plan,
    dest: Path,
    owner: Any,
    extra: dict[str, str],
    config: str,
    tablespaces: dict[str, Path] | None = None,
) -> dict[str, str]:
    """Restore the base into ``dest`` and write the recovery settings (with ``extra``, which
    are returned as written)."""
    (dest / IN_PROGRESS).write_text(format_time(utcnow()) or "")
    restore_base(store, plan, dest, owner=owner, tablespace_locations=tablespaces)
    last = plan.last_backup
    assert last is not None
    inside = sorted(set(last.engine_meta.get("tablespaces") or {}) - set(tablespaces or {}))
    if inside:
        # Their own locations belong to the running instance (or to the data directory set
        # aside, which is never overwritten): they are restored into pg_tblspc/<oid> instead,
        # which PostgreSQL accepts as in-place tablespaces.
        extra = {**extra, "allow_in_place_tablespaces": "on"}
        where = ", ".join(f"{oid} (was {last.engine_meta['tablespaces'][oid]})" for oid in inside)
        log.warning("tablespaces restored inside the data directory (pg_tblspc): %s", where)
    command = restore_command_for(config, store.instance, dest)
    write_recovery(dest, recovery_settings(plan, command), owner, extra)
    return extra


def _config_files(plan: Plan, dest: Path, owner: Any) -> None:
    """Clusters whose configuration lives outside the data directory (Debian's
    /etc/postgresql) get the files recorded at backup time, made to point at ``dest``: a copy
    must never open the original's data directory."""
    last = plan.last_backup
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
    """Start the restored server, prefetching the plan's WAL, wait for promotion and check
    where replay ended. A server that promoted at the wrong point is stopped again: nobody
    must write into a recovery that failed."""
    spool = spool_of(server.datadir)
    with Prefetcher(store.storage, plan.segments, spool, owner=owner) as prefetcher:
        try:
            server.start(ready=False)
            server.wait_promoted()
        except PitrError as exc:
            raise _root_cause(exc, prefetcher.errors) from exc
    try:
        reached = check_reached(server, plan)
    except PitrError as exc:
        _stop_quietly(server)
        raise _root_cause(exc, prefetcher.errors, stopped=True) from exc
    if prefetcher.errors:  # PostgreSQL got those segments intact on a second attempt
        log.warning("prefetch problems (recovered): %s", prefetcher.errors[0].message)
    clear_recovery(server)
    shutil.rmtree(spool, ignore_errors=True)
    (server.datadir / IN_PROGRESS).unlink(missing_ok=True)
    return {"lsn": reached.lsn, "xid": _last_xid(store, plan, reached.last_commit),
            "gtid": None, "timeline": reached.timeline,
            "last_commit": format_time(reached.last_commit)}  # fmt: skip


def _last_xid(store: CatalogStore, plan: Plan, last_commit: datetime | None) -> int | None:
    """The xid of the last transaction replayed, found in pitr's index by its commit time
    (PostgreSQL reports the time; the index knows which commit had it)."""
    if last_commit is None or not plan.segments:
        return None
    try:
        found = store.transactions(plan.segments[-3:])
    except PitrError:
        return None
    matches = [t for txs in found.values() for t in txs if t.time == last_commit]
    return matches[-1].xid if matches else None


def _root_cause(exc: PitrError, fetch_errors: list[PitrError], stopped: bool = False) -> PitrError:
    """What to report when replay failed: a WAL segment that did not read back intact is
    the cause (exit 8, naming it); PostgreSQL's own complaint follows."""
    note = "; the server was stopped" if stopped else ""
    if not fetch_errors:
        return _reworded(exc, exc.message + note) if stopped else exc
    first = fetch_errors[0]
    return _reworded(first, f"{first.message} — {exc.message}{note}")


def _reworded(exc: PitrError, message: str) -> PitrError:
    """``exc`` (same class, exit code and hint) saying ``message``."""
    new = copy.copy(exc)
    new.message = message
    new.args = (message,)
    return new


def _stop_quietly(server: PgServer) -> None:
    try:
        server.stop()
    except PitrError as exc:
        log.error("could not stop %s: %s", server.datadir, exc.message)


def restore_beside(
    store: CatalogStore,
    server: PgServer,
    replan: Replan,
    dest: Path,
    port: int | None,
    config: str,
) -> Recovered:
    tools = ["postgres", *(["pg_ctl"] if port else [])]
    server.require_tools(tools)
    if port is not None:
        check_port(port, server.os_user)
    plan = replan()
    require_recoverable(plan)
    _require_major(server, plan, tools)
    if dest.exists() and not dest.is_dir():
        raise PreconditionFailed(f"{dest} is not a directory: restore needs a new or empty one")
    if dest.exists() and any(dest.iterdir()):
        _redo_interrupted(dest, PgServer(server.settings, datadir=str(dest)).is_running())
    require_space({dest: space_needed(plan, replay=port is not None)}, "the restore")
    created = not dest.exists()
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = owner_ids(server.os_user)
    settings = _plain(server)
    try:
        extra = {"archive_mode": "off"} | ({"port": str(port)} if port else {})
        extra = _prepare(store, plan, dest, owner, extra, config)
        _config_files(plan, dest, owner)
        sockets = _socket_directories(PgServer(settings, datadir=str(dest), env=server.env))
        if sockets is not None:
            extra["unix_socket_directories"] = sockets
            command = restore_command_for(config, store.instance, dest)
            write_recovery(dest, recovery_settings(plan, command), owner, extra)
            settings = _reached_through(settings, sockets)
    except BaseException as exc:
        clean(dest, created)
        if ran_out_of_space(exc):
            raise space_error(dest, "the restore", removed_note(dest, created)) from exc
        raise
    if port is None:
        (dest / IN_PROGRESS).unlink()  # complete: only starting it remains
        nothing = {"lsn": None, "xid": None, "gtid": None}  # replay runs when it is started
        return Recovered(store.instance, plan, dest, nothing, status="RESTORED")
    restored = PgServer(settings, datadir=str(dest), port=port, env=server.env)
    try:
        reached = _replay(restored, store, plan, owner)
    except PitrError as exc:
        if not (ran_out_of_space(exc) or nearly_full(dest)):
            raise
        _stop_quietly(restored)  # (already down, most often)
        clean(dest, created)
        raise space_error(dest, "the replay", removed_note(dest, created)) from exc
    return Recovered(store.instance, plan, dest, reached, _last_commit(reached), port)


def _redo_interrupted(dest: Path, running: bool) -> None:
    """A non-empty ``dest`` is refused, unless it is a restore pitr left unfinished (its
    marker is there, no server runs on it): then what it holds is pitr's, and is redone."""
    if not (dest / IN_PROGRESS).exists():
        raise PreconditionFailed(f"{dest} is not empty: restore needs a new or empty directory")
    if running:
        raise PreconditionFailed(
            f"{dest} is an unfinished restore whose server is still running",
            hint=f"stop that server (its pid is in {dest}), then run the restore again",
        )
    log.info("%s is a restore pitr left unfinished: redoing it", dest)
    clean(dest, created=False)


def _socket_directories(restored: PgServer) -> str | None:
    """A restored copy keeps the original's configuration, unix socket directories included;
    where one of them does not exist (another machine, the original gone), PostgreSQL would
    refuse to start. Then: the directories that exist, else the data directory itself (when
    its path is short enough for a socket name), else /tmp. None: keep the configuration."""
    done = restored.run_tool(
        "postgres", "-C", "unix_socket_directories", "-D", str(restored.datadir),
        timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        log.debug("postgres -C unix_socket_directories: %s", done.stderr.decode(errors="replace"))
        return None
    configured = [d.strip().strip('"') for d in done.text.strip().split(",") if d.strip()]
    usable = [d for d in configured if d.startswith("@") or Path(d).is_dir()]
    if usable == configured:
        return None
    if not usable:
        own = str(restored.datadir)
        usable = [own if len(own) + len("/.s.PGSQL.65535.lock") < SOCKET_PATH_MAX else "/tmp"]
    log.info(
        "unix_socket_directories %s do not all exist here: using %s",
        ", ".join(configured), ", ".join(usable),
    )  # fmt: skip
    return ", ".join(usable)


def _reached_through(settings: Any, sockets: str) -> Any:
    """Settings that reach the restored copy: through its own socket directory where the
    instance is reached through a socket."""
    from dataclasses import replace

    first = sockets.split(",", maxsplit=1)[0].strip()
    if settings.socket:
        return replace(settings, socket=first)
    if settings.host and settings.host.startswith("/"):
        return replace(settings, host=first)
    return settings


def _plain(server: PgServer) -> Any:
    """The instance's settings without its service commands (they start the original)."""
    from dataclasses import replace

    return replace(server.settings, start_command=None, stop_command=None)


def _last_commit(reached: dict[str, Any]) -> datetime | None:
    text = reached.get("last_commit")
    return datetime.fromisoformat(text) if text else None


def secure_newest_wal(server: PgServer, store: CatalogStore) -> str | None:
    """Switch to a new WAL segment and wait until the finished one is in the repository, so
    the mistake's WAL can be replayed. Returns its name (None when the instance is down)."""
    if not server.is_running():
        return None
    if server.query("SELECT pg_is_in_recovery()")[0][0]:
        raise PreconditionFailed(
            f"instance {store.instance} is in recovery (a standby?): its WAL cannot be switched "
            "and archived from here; nothing was changed",
            hint="run pitr on the primary, or stop this server first",
        )
    archiver = server.archiver_state()
    # The segment holding the switch's last byte. A switch with nothing to switch returns the
    # start of the current segment, which pg_walfile_name names as the previous segment up to
    # PostgreSQL 16 and as the current (unfinished) one from 17 on: hence the "- 1".
    rows = server.query("SELECT pg_walfile_name(pg_switch_wal() - 1)")
    name = str(rows[0][0])
    stream = name[:8]
    deadline = time.monotonic() + SECURE_WAIT
    while store.segment_index(stream, name) is None:
        failing = server.archiver_failing(archiver)
        if failing:
            raise PreconditionFailed(
                f"WAL segment {name} cannot reach the repository: archive_command fails "
                f"({failing}); nothing was changed",
                hint="see PostgreSQL's log for the archive_command error",
            )
        if time.monotonic() > deadline:
            raise PreconditionFailed(
                f"WAL segment {name} did not reach the repository within {SECURE_WAIT:g} s; "
                "nothing was changed",
                hint="check archive_command ('pitr wal-push %p') and pg_stat_archiver",
            )
        time.sleep(0.2)
    log.info("newest WAL secured in the repository: %s", name)
    return name


def recover_in_place(
    store: CatalogStore, server: PgServer, replan: Replan, config: str
) -> Recovered:
    server.require_tools(server.control_tools())
    datadir = server.datadir
    staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
    plan = _plan_with_newest_wal(store, server, replan)
    require_recoverable(plan)
    _require_major(server, plan, server.control_tools())
    owner = owner_ids(server.os_user)
    # What an interrupted run set aside (it is reported again, never touched).
    aside = _set_aside_by(staging) or _set_aside_by(datadir)
    if staging.exists():
        if not (staging / IN_PROGRESS).exists():
            raise PreconditionFailed(f"{staging} exists and was not made by pitr; move it away")
        shutil.rmtree(staging)  # an earlier interrupted run of ours
    require_space({staging: space_needed(plan, replay=True)}, "the recovery")
    staging.mkdir(mode=0o700)
    try:
        _prepare(store, plan, staging, owner, {}, config)
        verify_wal(store, plan)
        server.stop()
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if ran_out_of_space(exc):
            kept = f"{staging} was removed; the instance was not stopped, nothing was changed"
            raise space_error(staging, "the recovery", kept) from exc
        if isinstance(exc, PitrError):
            untouched = "; the instance was not stopped, nothing was changed"
            raise _reworded(exc, exc.message + untouched) from exc
        raise
    try:
        if (datadir / IN_PROGRESS).exists():
            shutil.rmtree(datadir)  # our own half-recovered directory from an interrupted run
        elif datadir.exists():
            moved = datadir.with_name(f"{datadir.name}.pitr-{compact_id_time(utcnow())}")
            datadir.rename(moved)
            aside = moved
            log.info("data directory set aside as %s", aside)
        if aside is not None:
            with (staging / IN_PROGRESS).open("a") as marker:
                marker.write(f"\n{PREVIOUS}{aside}\n")
        staging.rename(datadir)
        reached = _replay(server, store, plan, owner)
        _wait_for_history(store, int(reached["timeline"]))
    except (PitrError, OSError) as exc:
        raise _failed_after_swap(exc, datadir, aside) from exc
    return Recovered(store.instance, plan, datadir, reached, _last_commit(reached), server.port,
                     previous_datadir=aside)  # fmt: skip


def _failed_after_swap(exc: PitrError | OSError, datadir: Path, aside: Path | None) -> PitrError:
    """Once the instance is stopped for the swap, any failure is exit 7 naming where its data
    directory now is (an interruption keeps its own code): the reason is kept in the message."""
    reason = exc.message if isinstance(exc, PitrError) else f"{type(exc).__name__}: {exc}"
    if aside is not None:
        kept = f"the previous data directory is kept at {aside}"
        hint = (
            f"fix the cause and run the same recover again ({aside} is never touched); "
            f"to go back instead, put {aside} back in place of {datadir}"
        )
    else:
        kept, hint = f"no previous data directory was set aside for {datadir}", None
    message = f"recovery failed: {reason}; {kept}"
    if isinstance(exc, Interrupted):
        return _reworded(exc, message)
    if ran_out_of_space(exc) or nearly_full(datadir):
        return space_error(datadir, "the recovery", f"{kept}; {datadir} is pitr's, redone by "
                           "the next recover")  # fmt: skip
    return ToolFailed(message, hint=hint)


def _set_aside_by(directory: Path) -> Path | None:
    """The data directory an interrupted recover set aside, from the marker it left in the
    directory it was restoring into."""
    try:
        text = (directory / IN_PROGRESS).read_text()
    except OSError:
        return None
    found = [ln[len(PREVIOUS) :] for ln in text.splitlines() if ln.startswith(PREVIOUS)]
    return Path(found[-1]) if found and Path(found[-1]).is_dir() else None


def _plan_with_newest_wal(store: CatalogStore, server: PgServer, replan: Replan) -> Plan:
    """The plan, once the instance's newest WAL is in the repository: the target (the last
    good transaction before the mistake) is most often in the segment being written, which
    only a WAL switch gets archived. Switching changes no data, so it is done even when the
    plan is refused — unless the data directory is our own half-recovered one (an
    interrupted run: its server, if up, is still replaying or on a throw-away timeline)."""
    plan = replan()
    if (server.datadir / IN_PROGRESS).exists():
        log.info("%s is a recovery pitr left unfinished: taking it over", server.datadir)
        return plan
    if plan.recoverable:
        secure_newest_wal(server, store)
    else:
        try:
            if secure_newest_wal(server, store) is None:
                return plan  # the instance is down: its WAL cannot be switched
        except PitrError as exc:
            log.warning("could not archive the newest WAL: %s", exc.message)
            return plan
    return replan()  # again: the newest WAL may hold the target


def _wait_for_history(store: CatalogStore, timeline: int) -> None:
    """The new timeline's history must be archived before a later recovery can follow it."""
    name = f"{timeline:08X}.history"
    deadline = time.monotonic() + SECURE_WAIT
    while not store.storage.exists(store.layout.history_index(name)):
        if time.monotonic() > deadline:
            log.warning("%s has not reached the repository yet: check archive_command", name)
            return
        time.sleep(0.3)
