"""Process and directory helpers shared by the real-server test harness.

Every server the harness starts runs in its own process group, logs to a file and
is recorded here, so that :func:`cleanup_all` (called from ``pytest_sessionfinish`` and,
as a last resort, from ``atexit``) can kill whatever a failing test left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ServerStartError",
    "cleanup_all",
    "free_port",
    "group_alive",
    "keep_test_dirs",
    "kill_group",
    "log_tail",
    "make_base_dir",
    "pid_alive",
    "remove_dir",
    "start_process",
    "stop_process",
    "track_group",
    "untrack_group",
    "wait_until",
]

#: Set ``PITR_KEEP_TEST_DIRS=1`` to keep server directories (logs, data) for debugging.
KEEP_ENV = "PITR_KEEP_TEST_DIRS"

_BASE_DIRS: list[Path] = []
_GROUPS: set[int] = set()


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""

    def __init__(self, what: str, reason: str, log: str = "") -> None:
        message = f"{what} failed to start: {reason}"
        if log:
            message += f"\n--- log tail ---\n{log}"
        super().__init__(message)


def keep_test_dirs() -> bool:
    """True when the user asked to keep the harness directories."""
    return os.environ.get(KEEP_ENV, "") not in ("", "0")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it returns a truthy value.

    Exceptions raised by the predicate count as "not yet", except :class:`ServerStartError`,
    which a predicate raises to give up early (e.g. the server process died). On timeout a
    :class:`ServerStartError` is raised naming ``what``, the last exception seen and
    ``on_timeout()`` (usually a log tail).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except ServerStartError:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            reason = f"not ready after {timeout:.1f}s"
            if last_error is not None:
                reason += f" (last error: {last_error!r})"
            raise ServerStartError(what, reason, on_timeout() if on_timeout else "")
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def make_base_dir(prefix: str) -> Path:
    """Create a fresh directory directly under /tmp, mode 0755.

    pytest's ``tmp_path`` lives below a 0700 directory the ``postgres`` OS user cannot
    traverse, so servers get their own directories here. They are removed at session end
    (see :func:`cleanup_all`) unless ``PITR_KEEP_TEST_DIRS=1``.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    _BASE_DIRS.append(path)
    return path


def remove_dir(path: Path) -> None:
    """Remove a harness directory now (no-op when keeping dirs)."""
    if keep_test_dirs():
        return
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(ValueError):
        _BASE_DIRS.remove(path)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie.

    PID 1 on this machine does not necessarily reap orphans (a daemonised postmaster is
    re-parented to it), so a dead server can linger as a zombie that ``kill(pid, 0)`` sees.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ')'.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def group_alive(pgid: int) -> bool:
    """True if any non-zombie process belongs to process group ``pgid``."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def track_group(pgid: int) -> None:
    """Remember a process group to kill at session end if it is still alive."""
    _GROUPS.add(pgid)


def untrack_group(pgid: int) -> None:
    _GROUPS.discard(pgid)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group, ignoring groups that are already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_process(
    argv: Sequence[str | os.PathLike[str]],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session/process group, stdout+stderr appended to ``log_path``.

    ``env`` replaces the environment when given.
    """
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    track_group(proc.pid)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL it."""
    if proc.poll() is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Children that outlived the leader (e.g. forked workers) go too.
    kill_group(proc.pid, signal.SIGKILL)
    untrack_group(proc.pid)


def cleanup_all(remove_dirs: bool = True) -> None:
    """Kill every process group still tracked and remove the base dirs (unless kept)."""
    for pgid in list(_GROUPS):
        kill_group(pgid, signal.SIGKILL)
        _GROUPS.discard(pgid)
    if remove_dirs and not keep_test_dirs():
        for path in list(_BASE_DIRS):
            shutil.rmtree(path, ignore_errors=True)
        _BASE_DIRS.clear()


atexit.register(cleanup_all)
