"""Every external program pitr runs goes through here.

Arguments are lists (never a shell string), secrets travel in the environment or in files
(never on argv, where ``ps`` shows them), stderr is captured, and success is the exit status —
callers then check the result for themselves (the target was reached, the file exists), never a
log line.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pitr.errors import PreconditionFailed, ToolFailed

log = logging.getLogger("pitr.proc")


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
) -> subprocess.Popen[bytes]:
    """Start a streaming child (its stdout or stdin is a pipe); the caller waits for it and
    checks its exit status with ``finish``."""
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
        )
    except FileNotFoundError:
        raise PreconditionFailed(f"{argv[0]} not found") from None


def finish(child: subprocess.Popen[bytes], what: str, timeout: float | None = None) -> None:
    """Wait for a streaming child; ``ToolFailed`` unless it exited 0."""
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise ToolFailed(f"{what} did not finish within {timeout:g} s") from None
    if child.returncode != 0:
        raise ToolFailed(f"{what} failed (exit {child.returncode}): {_last_line(err or b'')}")
