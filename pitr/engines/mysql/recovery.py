"""``restore`` (a new server beside the instance) and ``recover`` (the instance, in place).

Nothing is touched before the plan is proven and every object it needs has been read back
intact: the base is restored and prepared in a new directory, and the binlogs downloaded, while
the instance still runs. Only then, in place: stop it (waiting for the process to exit), set its
data directory aside (never deleted) and its binlogs too (into ``<binlog dir>/pitr-<time>/``:
the restored server starts a new binlog sequence, a new stream), move the restored directory
in, start it, replay, check the GTID position. A run interrupted half-way can be run again: the
directory pitr restored carries a marker and is redone.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pitr.catalog.store import CatalogStore
from pitr.domain.timeutil import compact_id_time, format_time, utcnow
from pitr.engines.base import Replan
from pitr.engines.mysql.archive import Shipper, flush_and_archive
from pitr.engines.mysql.relay import writers
from pitr.engines.mysql.replay import (
    PID_FILE,
    REDO_LOG,
    Expected,
    expected_end,
    owner_of,
    replay_plan,
    start_own,
)
from pitr.engines.mysql.restore import BinlogFetch, restore_base
from pitr.engines.mysql.server import MyServer, alive
from pitr.engines.ports import check_port
from pitr.engines.recovery import Recovered, clean, require_recoverable
from pitr.engines.space import (
    nearly_full,
    ran_out_of_space,
    removed_note,
    require_space,
    space_error,
)
from pitr.errors import PitrError, PreconditionFailed, ToolFailed
from pitr.planner.plan import Plan
from pitr.storage.transfer import Compression

log = logging.getLogger("pitr.mysql")
IN_PROGRESS = "pitr-restore-in-progress"


def _reached(gtid: str | None) -> dict[str, Any]:
    """Where replay ended (docs/json.md's ``reached``): the server's GTID position."""
    return {"lsn": None, "xid": None, "gtid": gtid}


def _owner(path: Path) -> tuple[int, int] | None:
    """uid/gid to give restored files when pitr runs as root for another user."""
    if os.geteuid() != 0 or not path.exists():
        return None
    st = path.stat()
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def _chown_tree(root: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    os.chown(root, *owner)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(top, name), *owner, follow_symlinks=False)


def _server_id(plan: Plan) -> int:
    backup = plan.differential or plan.full
    assert backup is not None
    value = str(backup.engine_meta.get("server_id") or backup.system)
    return int(value) if value.isdigit() else 1


def _restore_into(
    store: CatalogStore, server: MyServer, plan: Plan, dest: Path, scratch: Path
) -> tuple[BinlogFetch, list[Path]]:
    """Base into ``dest`` and binlogs into ``scratch``, at the same time; all verified."""
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    fetch = BinlogFetch(store.storage, plan.segments, scratch / "binlogs")
    try:
        restore_base(store.storage, server, plan, dest, scratch)
        return fetch, fetch.paths()
    except BaseException:
        fetch.close()
        raise


def restore_beside(
    store: CatalogStore,
    server: MyServer,
    replan: Replan,
    dest: Path,
    port: int | None,
    compression: Compression,
) -> Recovered:
    if port is not None:  # the restored server runs as the owner of the instance's files
        check_port(port, owner_of(Path(server.settings.datadir or dest)))
    plan = replan()
    require_recoverable(plan)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        _redo_interrupted(dest)
    scratch = dest.with_name(f".{dest.name}.pitr-scratch")
    require_space(space_needed(plan, dest, scratch, redo=REDO_LOG), "the restore")
    created = not dest.exists()
    dest.mkdir(mode=0o750, parents=True, exist_ok=True)
    (dest / IN_PROGRESS).write_text(format_time(utcnow()) or "")
    try:
        fetch, files = _restore_into(store, server, plan, dest, scratch)
        expected = expected_end(store, plan)
        ids = writers(store, plan) if server.flavor == "mariadb" else frozenset()
        _chown_tree(dest, _owner(server.datadir) if server.settings.datadir else None)
    except BaseException as exc:
        full = _full(exc, dest)  # asked before what was written is removed
        shutil.rmtree(scratch, ignore_errors=True)
        clean(dest, created)
        if full:
            raise space_error(dest, "the restore", removed_note(dest, created)) from exc
        raise
    try:
        own = start_own(server, dest, port, _server_id(plan))
        try:
            reached = replay_plan(own, plan, files, expected, ids)
        except BaseException:
            own.stop()
            raise
        if port is None:
            own.stop()
    except PitrError as exc:
        if _full(exc, dest):
            clean(dest, created)  # half replayed: nothing anyone should start
            raise space_error(dest, "the replay", removed_note(dest, created)) from exc
        raise ToolFailed(f"restore failed: {exc.message}; the restored directory is kept at "
                         f"{dest} for inspection", hint=exc.hint) from exc  # fmt: skip
    finally:
        fetch.close()
        shutil.rmtree(scratch, ignore_errors=True)
    (dest / IN_PROGRESS).unlink(missing_ok=True)
    when = expected.last.time if expected.last else None
    status = "ACTIVE" if port else "RESTORED"
    return Recovered(store.instance, plan, dest, _reached(reached), when, port, status)


def space_needed(plan: Plan, dest: Path, scratch: Path, redo: int = 0) -> dict[Path, int]:
    """Bytes a restore of ``plan`` writes: the full (and the server's redo log) into
    ``dest``; the differential and the binlogs into ``scratch``."""
    assert plan.full is not None
    extra = plan.differential.raw_bytes if plan.differential else 0
    binlogs = sum(s.object.raw_size for s in plan.segments)
    return {dest: plan.full.raw_bytes + redo, scratch: extra + binlogs}


def _redo_interrupted(dest: Path) -> None:
    """A non-empty ``dest`` is refused, unless it is a restore pitr left unfinished (its
    marker is there, no server runs on it): then what it holds is pitr's, and is redone."""
    if not dest.is_dir() or not (dest / IN_PROGRESS).exists():
        raise PreconditionFailed(f"{dest} is not empty: restore needs a new or empty directory")
    pid = _running_pid(dest / PID_FILE)
    if pid is not None:
        raise PreconditionFailed(
            f"{dest} is an unfinished restore whose server is still running (pid {pid})",
            hint="stop that server, then run the restore again",
        )
    log.info("%s is a restore pitr left unfinished: redoing it", dest)
    shutil.rmtree(dest.with_name(f".{dest.name}.pitr-scratch"), ignore_errors=True)
    clean(dest, created=False)


def _full(exc: BaseException, directory: Path) -> bool:
    """Did ``exc`` come from a full file system? The tools' own messages vary: a tool that
    failed while the file system is (nearly) full counts too."""
    return ran_out_of_space(exc) or (isinstance(exc, PitrError) and nearly_full(directory))


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def _curable(plan: Plan) -> bool:
    """Could archiving the newest binlog make this plan recoverable?"""
    return plan.recoverable or not any(
        p.startswith(("no backup", "backup ")) for p in plan.problems
    )


def _set_binlogs_aside(directory: Path | None, base: str | None, datadir: Path,
                       stamp: str) -> Path | None:  # fmt: skip
    """Move the instance's binlogs (numbered files, index, state) into a subdirectory: the
    restored server must start a sequence of its own, not continue the replaced one's.
    ``base`` is the binlog base name (None when the server could not be asked: then every
    file that looks like a binlog, index or state file goes)."""
    if directory is None or directory == datadir or datadir in directory.parents:
        return None  # unknown, or they go aside with the data directory
    pattern = f"{base}.*" if base else "*.*"
    files = [
        p
        for p in directory.glob(pattern)
        if p.is_file() and (base or p.suffix[1:].isdigit() or p.suffix in (".index", ".state"))
    ]
    if not files:
        return None
    aside = directory / f"pitr-{stamp}"
    aside.mkdir(mode=0o750)
    for path in files:
        path.rename(aside / path.name)
    log.info("binlogs of the replaced server set aside in %s", aside)
    return aside


def _secure(
    store: CatalogStore, server: MyServer, replan: Replan, compression: Compression, ours: bool
) -> tuple[Plan, bool, Path | None, str | None]:
    """Refuse early what newer binlogs cannot cure; ``FLUSH BINARY LOGS`` and archive, so the
    binlog holding the mistake is in the repository; then the plan."""
    first = replan()
    if not _curable(first):
        require_recoverable(first)
    running = server.accepts_connections()
    if not running and not server.settings.start_command:
        raise PreconditionFailed(
            f"instance {store.instance} is not running and has no start_command: pitr could "
            "not start it after restoring; nothing was changed",
            hint="set start_command (e.g. 'systemctl start mariadb'), or start the instance",
        )
    directory = Path(server.settings.binlog_dir) if server.settings.binlog_dir else None
    base = None
    if running:
        basename = server.binlog_basename()
        directory, base = basename.parent, basename.name
        if not ours:
            closed = flush_and_archive(server, Shipper.of(store, server, compression))
            log.info("newest binlog %s secured in the repository", closed)
    else:
        log.warning("instance %s is not running: its newest binlogs cannot be secured",
                    store.instance)  # fmt: skip
    plan = replan()
    require_recoverable(plan)
    return plan, running, directory, base


def _stage(
    store: CatalogStore, server: MyServer, plan: Plan, staging: Path, scratch: Path
) -> tuple[BinlogFetch, list[Path], Expected]:
    if staging.exists():
        if not (staging / IN_PROGRESS).exists():
            raise PreconditionFailed(f"{staging} exists and was not made by pitr; move it away")
        shutil.rmtree(staging)
    require_space(space_needed(plan, staging, scratch), "the recovery")
    staging.mkdir(mode=0o750)
    (staging / IN_PROGRESS).write_text(format_time(utcnow()) or "")
    try:
        fetch, files = _restore_into(store, server, plan, staging, scratch)
        return fetch, files, expected_end(store, plan)
    except BaseException as exc:
        full = _full(exc, staging)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        if full:
            kept = f"{staging} was removed; the instance was not stopped, nothing was changed"
            raise space_error(staging, "the recovery", kept) from exc
        raise


def _keep_identity(aside: Path | None, staging: Path) -> None:
    """MySQL: the instance keeps its ``server_uuid`` (``auto.cnf``) and persisted settings
    (``mysqld-auto.cnf``), which a clone backup does not hold."""
    from pitr.engines.mysql.clone import NOT_BACKED_UP

    if aside is None:
        return
    for name in NOT_BACKED_UP:
        if (aside / name).is_file() and not (staging / name).exists():
            shutil.copy2(aside / name, staging / name)


def recover_in_place(
    store: CatalogStore, server: MyServer, replan: Replan, compression: Compression
) -> Recovered:
    datadir = server.datadir
    staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
    scratch = datadir.with_name(f".{datadir.name}.pitr-scratch")
    ours = (datadir / IN_PROGRESS).exists()  # our own directory from an interrupted run
    plan, running, binlog_dir, base = _secure(store, server, replan, compression, ours)
    fetch, files, expected = _stage(store, server, plan, staging, scratch)
    owner = _owner(datadir)
    mode = datadir.stat().st_mode & 0o777 if datadir.exists() else 0o750
    argv = server.stop() if running else None
    stamp = compact_id_time(utcnow())
    aside: Path | None = None
    binlogs_aside = _set_binlogs_aside(binlog_dir, base, datadir, stamp)
    if ours:
        shutil.rmtree(datadir)
    elif datadir.exists():
        aside = datadir.with_name(f"{datadir.name}.pitr-{stamp}")
        datadir.rename(aside)
        log.info("data directory set aside as %s", aside)
    _keep_identity(aside, staging)
    _chown_tree(staging, owner)
    staging.chmod(mode)
    staging.rename(datadir)
    try:
        restored = MyServer(server.settings, datadir=datadir)
        restored.start(argv)
        reached = replay_plan(restored, plan, files, expected)
    except PitrError as exc:
        kept = f"; the replaced data directory is kept at {aside}" if aside else ""
        kept += f"; the replaced server's binlogs are in {binlogs_aside}" if binlogs_aside else ""
        if ran_out_of_space(exc):
            full = next((d for d in (binlog_dir, datadir) if d and nearly_full(d)), datadir)
            outcome = f"{server.flavor} runs on what was replayed so far: recover again{kept}"
            raise space_error(full, "the replay", outcome) from exc
        raise ToolFailed(f"recovery failed: {exc.message}{kept}", hint=exc.hint) from exc
    finally:
        fetch.close()
        shutil.rmtree(scratch, ignore_errors=True)
    (datadir / IN_PROGRESS).unlink(missing_ok=True)
    when = expected.last.time if expected.last else None
    return Recovered(store.instance, plan, datadir, _reached(reached), when, server.port,
                     "ACTIVE", aside, binlogs_aside)  # fmt: skip
