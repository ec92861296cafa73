"""``pitr wal-push --async``: archive_command in a few milliseconds, archiving in parallel.

PostgreSQL runs ``archive_command`` once per segment, one at a time, and waits for it. A pitr
process that compresses, indexes and uploads each segment itself costs a Python start-up
per segment and archives one segment at a time. With ``--async`` the archive_command only
looks for a status file and waits for it, while one resident worker per instance pushes every
segment PostgreSQL has marked ready — several at once, ahead of the archiver, through one
storage connection — and writes ``<segment>.ok`` once the segment is published (its index
document exists), or ``<segment>.error`` with the exit code and message when it cannot be.
The archive_command returns 0 only for ``.ok``: nothing is acknowledged before it is safe.

The worker is started by the first archive_command that finds none running (an exclusive
``flock`` on ``worker.lock`` says one runs), and leaves after ``IDLE_EXIT`` seconds without
work. This module keeps its imports light: the archive_command side imports almost nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

IDLE_EXIT = 30.0
POLL = 0.01
WAIT_LIMIT = 60.0  # then PostgreSQL is told to try again later
REQUEUE_AFTER = 10.0
OK = ".ok"
ERROR = ".error"


def spool_for(spool_dir: str, instance: str) -> Path:
    return Path(spool_dir) / instance / "archive"


def _worker_running(spool: Path) -> bool:
    try:
        fd = os.open(spool / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: probes never block each other
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


def _take_lock(fd: int) -> bool:
    """The worker's exclusive lock. Probes hold it for an instant, so try for a second
    before concluding that another worker has it."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)


def _start_worker(spool: Path, config: str | None, instance: str, pg_wal: Path) -> None:
    argv = [sys.executable, "-m", "pitr"]
    if config:
        argv += ["--config", config]
    argv += ["wal-push-worker", "--instance", instance, "--pg-wal", str(pg_wal)]
    from pitr.engines import proc  # only when a worker starts: wal-push stays light

    proc.detach(argv, spool / "worker.log")  # not PostgreSQL's child once the archiver moves on


def _identity(path: Path) -> str:
    """Which file a status file speaks for: a ``.ok`` left by a worker serving another data
    directory (the same instance name and spool) must not acknowledge this one's segment."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def wait_for(spool: Path, path: Path, config: str | None, instance: str) -> tuple[int, str]:
    """The archive_command side: (exit code, message) once the worker has decided."""
    name = path.name
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    ok, error = spool / f"{name}{OK}", spool / f"{name}{ERROR}"
    identity = _identity(path)
    deadline = time.monotonic() + WAIT_LIMIT
    spawned = -10.0
    while time.monotonic() < deadline:
        if ok.exists():
            if _take(ok) == identity:
                return 0, f"{name} archived"
            continue  # another file's: wait for this one's
        if error.exists() and (text := _take(error)) is not None:
            code, _, message = text.partition("\n")
            return int(code or 1), message.strip() or f"{name} could not be archived"
        # A new worker needs a moment to take its lock: don't start a second one meanwhile.
        if time.monotonic() - spawned > 3.0 and not _worker_running(spool):
            _start_worker(spool, config, instance, path.absolute().parent)
            spawned = time.monotonic()
        time.sleep(POLL)
    return 5, f"{name}: the asynchronous archiver did not answer within {WAIT_LIMIT:g} s"


def _take(path: Path) -> str | None:
    """Remove a status file and return its text, atomically: the worker may be replacing it
    at this very moment, and a newer answer must not be deleted unread. None when gone."""
    taken = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return None
    try:
        return taken.read_text()
    finally:
        taken.unlink(missing_ok=True)


def _mark(spool: Path, name: str, suffix: str, text: str) -> None:
    tmp = spool / f".{name}{suffix}.tmp"
    tmp.write_text(text)
    os.replace(tmp, spool / f"{name}{suffix}")


def serve(spool: Path, pg_wal: Path, push_one: Callable[[Path], object], workers: int) -> None:
    """The worker: hold the lock, push what is ready (``workers`` at once) until idle."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from pitr.errors import PitrError

    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(spool / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if not _take_lock(fd):
        os.close(fd)
        return  # another worker took over between the check and the start
    running: dict[str, Future[bool]] = {}
    # Archived: PostgreSQL renames <segment>.ready to .done only after its archive_command
    # returned, so a segment stays "ready" for a moment after its .ok was consumed; it must
    # not be pushed again. A failure, once reported, is retried when PostgreSQL asks again.
    archived: set[str] = set()
    unanswered: dict[str, float] = {}  # archived, .ok taken, still ready: since when
    failed: set[str] = set()

    def one(path: Path) -> bool:
        identity = _identity(path)
        try:
            push_one(path)
        except PitrError as exc:
            _mark(spool, path.name, ERROR, f"{exc.exit_code}\n{exc.message}")
            return False
        except Exception as exc:  # a worker must answer, whatever happened
            _mark(spool, path.name, ERROR, f"1\nunexpected error: {type(exc).__name__}: {exc}")
            return False
        _mark(spool, path.name, OK, identity)
        return True

    idle_since = cleaned = time.monotonic()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="wal-push") as pool:
        while True:
            for name in [n for n, f in running.items() if f.done()]:
                (archived if running.pop(name).result() else failed).add(name)
            ready = _ready(pg_wal)
            still = {p.name for p in ready}
            archived &= still
            _requeue_lost(spool, archived, unanswered)
            failed = {n for n in failed if (spool / f"{n}{ERROR}").exists()}
            busy = running.keys() | archived | failed
            todo = [p for p in ready if p.name not in busy]
            for path in todo[: max(0, workers * 2 - len(running))]:
                running[path.name] = pool.submit(one, path)
            now = time.monotonic()
            if running or todo:
                idle_since = now
            elif now - idle_since > IDLE_EXIT:
                break
            if now - cleaned > 5:
                _forget_done(spool, still)
                cleaned = now
            time.sleep(0.02)
    _forget_done(spool, {p.name for p in _ready(pg_wal)})
    os.close(fd)


def _requeue_lost(spool: Path, archived: set[str], unanswered: dict[str, float]) -> None:
    """Push again a segment whose ``.ok`` was taken while PostgreSQL still lists it as ready
    after ``REQUEUE_AFTER`` seconds: its archive_command died before answering (PostgreSQL
    renames ``.ready`` within milliseconds of a success). Pushing again is harmless."""
    now = time.monotonic()
    for name in list(unanswered):
        if name not in archived:
            del unanswered[name]
    for name in archived - unanswered.keys():
        if not (spool / f"{name}{OK}").exists():
            unanswered[name] = now
    for name, since in list(unanswered.items()):
        if now - since > REQUEUE_AFTER:
            archived.discard(name)
            del unanswered[name]


def _ready(pg_wal: Path) -> list[Path]:
    """Files PostgreSQL has marked ready, history files first, then in WAL order."""
    status = pg_wal / "archive_status"
    try:
        names = [n.removesuffix(".ready") for n in os.listdir(status) if n.endswith(".ready")]
    except FileNotFoundError:
        return []
    names.sort(key=lambda n: (not n.endswith(".history"), n))
    return [pg_wal / n for n in names]


def _forget_done(spool: Path, ready: set[str]) -> None:
    """Status files whose segment PostgreSQL no longer waits for (it was archived)."""
    for suffix in (OK, ERROR):
        for status in spool.glob(f"*{suffix}"):
            if status.name.removesuffix(suffix) not in ready:
                with contextlib.suppress(OSError):
                    status.unlink()
