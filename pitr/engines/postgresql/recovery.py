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
    spool_of,
    write_recovery,
)
from pitr.engines.postgresql.server import PgServer
from pitr.errors import Interrupted, NotRecoverable, PitrError, PreconditionFailed, ToolFailed
from pitr.executor import Prefetcher
from pitr.plan import Plan
from pitr.planning import make_plan
from pitr.targets import Target
from pitr.timeutil import compact_id_time, format_time, utcnow

log = logging.getLogger("pitr.postgresql")
IN_PROGRESS = "pitr-restore-in-progress"
PREVIOUS = "previous datadir: "  # in the IN_PROGRESS marker, once the instance's is set aside
SECURE_WAIT = 120.0
SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1


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
    last = plan.differential or plan.full
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
    target: Target,
    dest: Path,
    port: int | None,
    config: str,
) -> Recovered:
    server.require_tools(["postgres", *(["pg_ctl"] if port else [])])
    plan = make_plan(store, target, reading=True).plan
    _require(plan)
    if dest.exists() and not dest.is_dir():
        raise PreconditionFailed(f"{dest} is not a directory: restore needs a new or empty one")
    if dest.exists() and any(dest.iterdir()):
        raise PreconditionFailed(f"{dest} is not empty: restore needs a new or empty directory")
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
    except BaseException:
        _clean(dest, created)
        raise
    if port is None:
        (dest / IN_PROGRESS).unlink()  # complete: only starting it remains
        nothing = {"lsn": None, "xid": None, "gtid": None}  # replay runs when it is started
        return Recovered(store.instance, plan, dest, nothing, None, None, None, status="RESTORED")
    restored = PgServer(settings, datadir=str(dest), port=port, env=server.env)
    reached = _replay(restored, store, plan, owner)
    return Recovered(store.instance, plan, dest, reached, _last_commit(reached), None, port)


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
    if server.query("SELECT pg_is_in_recovery()")[0][0]:
        raise PreconditionFailed(
            f"instance {store.instance} is in recovery (a standby?): its WAL cannot be switched "
            "and archived from here; nothing was changed",
            hint="run pitr on the primary, or stop this server first",
        )
    archiver = server.archiver_state()
    rows = server.query("SELECT pg_walfile_name(pg_switch_wal())")
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
    store: CatalogStore, server: PgServer, target: Target, config: str
) -> Recovered:
    server.require_tools(server.control_tools())
    datadir = server.datadir
    staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
    plan = _plan_with_newest_wal(store, server, target)
    _require(plan)
    owner = owner_ids(server.os_user)
    # What an interrupted run set aside (it is reported again, never touched).
    aside = _set_aside_by(staging) or _set_aside_by(datadir)
    if staging.exists():
        if not (staging / IN_PROGRESS).exists():
            raise PreconditionFailed(f"{staging} exists and was not made by pitr; move it away")
        shutil.rmtree(staging)  # an earlier interrupted run of ours
    staging.mkdir(mode=0o700)
    try:
        _prepare(store, plan, staging, owner, {}, config)
        server.stop()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
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
    return Recovered(store.instance, plan, datadir, reached, _last_commit(reached), aside,
                     server.port)  # fmt: skip


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


def _plan_with_newest_wal(store: CatalogStore, server: PgServer, target: Target) -> Plan:
    """The plan, once the instance's newest WAL is in the repository: the target (the last
    good transaction before the mistake) is most often in the segment being written, which
    only a WAL switch gets archived. Switching changes no data, so it is done even when the
    plan is refused — unless the data directory is our own half-recovered one (an
    interrupted run: its server, if up, is still replaying or on a throw-away timeline)."""
    plan = make_plan(store, target, reading=True).plan
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
    return make_plan(store, target, reading=True).plan  # again: the newest WAL may hold the target


def _wait_for_history(store: CatalogStore, timeline: int) -> None:
    """The new timeline's history must be archived before a later recovery can follow it."""
    name = f"{timeline:08X}.history"
    deadline = time.monotonic() + SECURE_WAIT
    while not store.storage.exists(store.layout.history_index(name)):
        if time.monotonic() > deadline:
            log.warning("%s has not reached the repository yet: check archive_command", name)
            return
        time.sleep(0.3)
