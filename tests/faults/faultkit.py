"""What the fault cases share: size-limited file systems, filling them at the worst moment,
signals and SIGKILLs delivered to a running pitr (whose processes are then left unreaped),
and the checks a DBA cares about afterwards."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from clirun import PITR, wait_for
from servers.common import make_base_dir, remove_dir

MiB = 1 << 20


@contextlib.contextmanager
def tmpfs(size: int, prefix: str = "pitr-tmpfs-") -> Iterator[Path]:
    """A file system of ``size`` bytes (mode 0777), unmounted afterwards whatever happens."""
    mount = make_base_dir(prefix)
    mount_tmpfs(mount, size)
    try:
        yield mount
    finally:
        unmount(mount)
        remove_dir(mount)


def mount_tmpfs(directory: Path, size: int) -> None:
    """Mount a file system of ``size`` bytes (mode 0777) on the empty ``directory``."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(directory)],
        check=True,
    )


def unmount(directory: Path) -> None:
    if mounted(directory):
        subprocess.run(["umount", "-l", str(directory)], check=False)


def mounted(path: Path) -> bool:
    return any(
        line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines()
    )


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def ballast(mount: Path, leave: int, name: str = "ballast") -> Path:
    """Take the free space of ``mount`` but ``leave`` bytes (with a file of its own)."""
    path = mount / name
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while (size := free_bytes(mount) - leave) > 64 << 10:  # others write meanwhile: again
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return path


class FillWhen:
    """Once ``ready()`` is true, fill ``mount`` but ``leave`` bytes: the file system runs out
    of space in the middle of whatever writes there (after pitr's up-front check)."""

    def __init__(self, mount: Path, ready: Callable[[], bool], leave: int = 0) -> None:
        self.mount = mount
        self.ready = ready
        self.leave = leave
        self.filled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FillWhen:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        (self.mount / "filler").unlink(missing_ok=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.ready():
                ballast(self.mount, self.leave, "filler")
                self.filled.set()
                return
            self._stop.wait(0.005)


def state(pid: int) -> str | None:
    """The process state letter in /proc (``Z``: a zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def kill_job_unreaped(proc: subprocess.Popen[str]) -> list[int]:
    """SIGKILL every process of ``proc``'s job (its process group: pitr and the tools it
    runs), as a cron timeout or the OOM killer would, and reap none of them: they linger as
    zombies (PID 1 here reaps no orphans). Returns the pids killed."""
    pids = group_members(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    wait_for(lambda: all(state(p) in (None, "Z") for p in pids), 30, "the job to die")
    assert state(proc.pid) == "Z"  # still there: kill(pid, 0) succeeds on it
    return pids


def reap(proc: subprocess.Popen[str]) -> None:
    """At the end of a test: the zombie leader is ours to reap."""
    with contextlib.suppress(Exception):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.communicate(timeout=10)


def interrupt(proc: subprocess.Popen[str], sig: int, timeout: float = 120) -> tuple[int, str]:
    """Send ``sig`` to pitr alone (not its job); its exit code and stderr."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@contextlib.contextmanager
def flipped(path: Path, at: float = 0.5) -> Iterator[None]:
    """One bit of ``path`` flipped (same size), at fraction ``at`` of it; put back after."""
    original = path.read_bytes()
    data = bytearray(original)
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))
    try:
        yield
    finally:
        path.write_bytes(original)


class Runner(Protocol):
    """What the e2e sites share: their pitr.toml, environment and directory."""

    config: Path
    env: dict[str, str]
    base: Path


#: runs argv[1:] with SIGINT's default action, as from a terminal: a suite started in the
#: background (SIGINT ignored, which exec keeps) must still see pitr's answer to Ctrl-C
WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def launch(site: Runner, *args: str) -> subprocess.Popen[str]:
    """``pitr ARGS`` in a session of its own (so that its whole job can be killed), as root
    with the e2e suites' shared umask."""
    return subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, str(PITR), "--config", str(site.config), *args],
        cwd=site.base,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        umask=0,
    )


def lock_object(repo: Path, resource: str = "instance") -> Path:
    return repo / "main" / "locks" / f"{resource}.json"
