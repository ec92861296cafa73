"""A fresh Debian 12 machine for the quick start's test: a ``debootstrap`` root (minbase plus
systemd, as an installed system has), built once per machine under
``/var/cache/pitr-test/roots/`` (``PITR_TEST_ROOTS`` moves it) in a temporary directory that is
renamed into place only when complete, and copied for each test so every run starts fresh.

Commands run inside a copy through ``unshare --mount``: ``/proc`` and ``/dev`` are mounted into
it in a private mount namespace, which the kernel drops with its last process (nothing is left
mounted). What the machine itself provides is given to the copy as a real machine has it: the
host's apt and dpkg settings (here dpkg's ``force-unsafe-io``, as Debian's container images
have it) and sources, DNS, and the CA bundle pip needs here. Downloaded packages are kept
beside the roots (``apt-archives/``, with the package lists in ``apt-lists/``) so later runs
fetch little; one test at a time uses them (``machine`` holds a lock). pip's downloads are not
kept: the proxy here marks them uncacheable. A process still running in a copy when its test
ends is killed before the copy goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("PITR_TEST_ROOTS", "/var/cache/pitr-test/roots"))
NAME = "bookworm-fresh-1"  # the recipe's version is in the name: a new recipe, a new root
MIRROR = os.environ.get("PITR_TEST_MIRROR", "http://deb.debian.org/debian")
BUILD_TIMEOUT = 1200.0
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
ROOT_CA = "/etc/pitr-test-ca.crt"  # outside the paths Debian's ca-certificates manages
#: mounts /proc, /dev and apt's caches into root $1, then chroot with the rest
_ENTER = r"""
set -e
root=$1 archives=$2 lists=$3
shift 3
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$archives" "$root/var/cache/apt/archives"
mount --bind "$lists" "$root/var/lib/apt/lists"
exec chroot "$root" "$@"
"""
APT_CACHES = (CACHE / "apt-archives", CACHE / "apt-lists")


def _build(work: Path, log: Path) -> None:
    argv = ["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv", "bookworm",
            str(work), MIRROR]  # fmt: skip
    with log.open("wb") as out:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                              timeout=BUILD_TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 0, f"debootstrap failed: see {log}"
    (work / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")


def fresh_root() -> Path:
    """The cached pristine root, built first if this machine has none."""
    root = CACHE / NAME
    if root.is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{NAME}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.is_dir():
            return root
        assert shutil.which("debootstrap"), "debootstrap is missing (scripts/bootstrap)"
        work = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=CACHE))
        try:
            _build(work, CACHE / f"{NAME}.build.log")
            work.chmod(0o755)
            work.rename(root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return root


@contextlib.contextmanager
def machine() -> Iterator[Path]:
    """A copy of the fresh root, given what the host machine provides; removed afterwards."""
    fresh = fresh_root()
    base = Path(tempfile.mkdtemp(prefix="pitr-fresh-", dir="/var/tmp"))
    copy = base / "root"
    lock = (CACHE / ".apt-caches.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cache in APT_CACHES:
            (cache / "partial").mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(fresh), str(copy)], check=True)
        for conf in Path("/etc/apt/apt.conf.d").glob("99*"):
            shutil.copy(conf, copy / "etc/apt/apt.conf.d" / conf.name)
        for conf in Path("/etc/dpkg/dpkg.cfg.d").glob("*"):
            shutil.copy(conf, copy / "etc/dpkg/dpkg.cfg.d" / conf.name)
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.is_file():
            (copy / "etc/apt/sources.list").unlink(missing_ok=True)
            shutil.copy(sources, copy / "etc/apt/sources.list.d/debian.sources")
        shutil.copy("/etc/resolv.conf", copy / "etc/resolv.conf")
        shutil.copy(HOST_CA, copy / ROOT_CA.lstrip("/"))
        yield copy
    finally:
        for pid in processes_in(copy):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()


def run_in(
    root: Path, argv: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``argv`` inside ``root`` with only ``env`` (plus PATH, HOME and pip's CA bundle)."""
    clean = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/root", "LANG": "C.UTF-8", "PIP_CERT": ROOT_CA,
             "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env}  # fmt: skip
    command = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _ENTER,
               "enter-root", str(root), *map(str, APT_CACHES),
               "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in clean.items()), *argv]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def enabled_units(root: Path) -> list[str]:
    """What makes a service start at boot in ``root``: the units systemd calls enabled, every
    symlink under ``/etc/systemd/system`` (``*.wants``, ``*.requires``, aliases, masks) with its
    target, and the SysV start links."""
    done = subprocess.run(
        ["systemctl", f"--root={root}", "list-unit-files", "--state=enabled", "--no-legend",
         "--no-pager"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    units = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    system = root / "etc/systemd/system"
    links = [
        f"{p.relative_to(root)} -> {os.readlink(p)}" for p in system.rglob("*") if p.is_symlink()
    ]
    starts = [f"{p.parent.name}/{p.name}" for p in root.glob("etc/rc[2345].d/S*")]
    return sorted(units + links + starts)


def processes_in(root: Path) -> list[int]:
    """The processes whose root directory is ``root`` (zombies have none: they are gone)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and os.readlink(proc / "root") == str(root):
                found.append(int(proc.name))
    return found
