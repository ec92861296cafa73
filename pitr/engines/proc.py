"""Every external program pitr runs goes through here.

Arguments are lists (never a shell string), secrets travel in the environment or in files
(never on argv, where ``ps`` shows them), stderr is captured, and success is the exit status —
callers then check the result for themselves (the target was reached, the file exists), never a
log line.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pitr.errors import PreconditionFailed, ToolFailed

if TYPE_CHECKING:
    from pitr.storage.base import Storage
    from pitr.storage.transfer import Compression, StoredObject

log = logging.getLogger("pitr.proc")
STDERR_LINES = 40  # of a streaming child, kept for its error message


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """Prefix ``runuser`` when running as root on behalf of another OS user (PostgreSQL
    refuses to run as root). ``runuser`` keeps the caller's environment."""
    if user is None or os.geteuid() != 0 or pwd.getpwuid(0).pw_name == user:
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def owner_name(path: Path) -> str | None:
    """Who owns ``path`` (tools then run as that user); None when it cannot be told."""
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return None


def find_tool(name: str, bindir: str | Path | None = None, *, hint: str | None = None) -> str:
    """Absolute path of ``name`` in ``bindir`` or on PATH; exit 6 when it is nowhere."""
    if bindir is not None:
        candidate = Path(bindir) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    where = f" in {bindir} or" if bindir else ""
    raise PreconditionFailed(
        f"{name} not found{where} on PATH", hint=hint or f"install {name} or set bindir"
    )


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no error output"


def run(
    argv: Sequence[str],
    *,
    what: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: str | Path | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Result:
    """Run to completion; with ``check``, a non-zero exit is ``ToolFailed`` (exit 7)."""
    full = as_user(argv, user)
    label = what or Path(argv[0]).name
    log.debug("running %s", " ".join(full))
    try:
        done = subprocess.run(
            full,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise PreconditionFailed(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{label} did not finish within {timeout:g} s") from None
    result = Result(tuple(full), done.returncode, done.stdout, done.stderr)
    if check and done.returncode != 0:
        raise ToolFailed(f"{label} failed (exit {done.returncode}): {_last_line(done.stderr)}")
    return result


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = None,
    stdout: int | None = subprocess.PIPE,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a streaming child (its stdout or stdin is a pipe); the caller drains its stderr
    and checks its exit status with :class:`StderrTail`. With ``die_with_parent`` (Linux), the
    child gets SIGTERM should pitr die without stopping it (SIGKILL): a WAL receiver left
    behind would keep its replication slot busy."""
    full = as_user(argv, user)
    log.debug("starting %s", " ".join(full))
    try:
        return subprocess.Popen(
            full,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            preexec_fn=_terminate_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    except FileNotFoundError:
        raise PreconditionFailed(f"{argv[0]} not found") from None


def stop(child: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM a streaming child, SIGKILL it after ``grace`` seconds; reaped either way."""
    if child.poll() is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(grace)
        if child.poll() is None:
            child.kill()
            child.wait()


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (prctl)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def detach(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child that outlives pitr (a server, the archiving worker): its own session,
    stdin closed, stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as out:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise PreconditionFailed(f"{argv[0]} not found") from None


class StderrTail:
    """Drains a streaming child's stderr in a thread (a full pipe would stall it), keeping the
    last lines for the error message."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._child = child
        self._thread = threading.Thread(target=self._drain, name="stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._child.stderr is not None
        for raw in self._child.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def wait(self, what: str) -> None:
        """Wait for the child; ``ToolFailed`` with its last error line unless it exited 0."""
        code = self._child.wait()
        self._thread.join()
        if code != 0:
            errors = [ln for ln in self.lines if "error" in ln.lower()] or list(self.lines)
            raise ToolFailed(f"{what} failed (exit {code}): "
                             f"{errors[-1].strip() if errors else 'no error output'}")  # fmt: skip


def upload_output(
    argv: list[str], storage: Storage, key: str, compression: Compression
) -> StoredObject:
    """Run ``argv`` and stream its standard output into ``key`` (nothing staged); ToolFailed
    with its last error line unless it exits 0."""
    from pitr.storage.transfer import upload  # not on the WAL hot path

    child = start(argv, stdout=subprocess.PIPE)
    tail = StderrTail(child)
    try:
        assert child.stdout is not None
        stored = upload(storage, key, child.stdout, compression)
    except BaseException:
        child.kill()
        raise
    finally:
        if child.stdout is not None:
            child.stdout.close()
    tail.wait(Path(argv[0]).name)
    return stored
