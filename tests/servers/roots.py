"""Debian roots for the servers the host's Debian 12 does not package: MySQL 9.x (sid) and
MariaDB 11.8 (trixie).

A root is built once per machine with ``debootstrap`` and cached under
``/var/cache/pitr-test/roots/<name>`` (``PITR_TEST_ROOTS`` moves it): it is built in a
temporary directory beside it and renamed into place only when complete, so a half-built root
is never reused; a lock per root serialises the test sessions that want it. Building is a test
ERROR when it fails (``RootBuildError``), never a skip. The name carries a recipe version:
changing a recipe builds a new root.

Everything that must see the root's libraries runs inside it through :func:`in_root`:
``unshare --mount`` gives the command a private mount namespace, in which ``/proc``, ``/dev``
and the host's ``/tmp`` are mounted into the root before ``chroot``. The kernel drops those
mounts when the last process of the namespace exits: nothing is left mounted, even after a
crash, and concurrent sessions never unmount each other's. As the host's ``/tmp`` is the root's
``/tmp``, a path under ``/tmp`` (a server's data directory, its socket, a repository, a
``pitr.toml``) is the same inside and outside: the harness and PyMySQL on the host reach a
rooted server's socket by the path the server was given.

pitr itself runs in the root too (the server's tools are there, and the paths the server
reports are the root's): :func:`install_pitr` makes a virtualenv of the session under /tmp,
over the root's Debian Python packages, and installs the wheel of the tree under test into it
(built once per session on the host; no network inside the root) with the pip of the root's
own virtualenv ``/opt/pitr/venv``. Sessions running at the same time never share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .common import make_base_dir

ROOTS_DIR = Path(os.environ.get("PITR_TEST_ROOTS", "/var/cache/pitr-test/roots"))
MIRROR = os.environ.get("PITR_TEST_MIRROR", "http://deb.debian.org/debian")
VENV = "/opt/pitr/venv"
BUILD_TIMEOUT = 1800.0
#: pitr's dependencies, from the root's own suite (the wheel is installed without them)
PYTHON_PACKAGES = (
    "python3", "python3-venv", "python3-click", "python3-rich", "python3-boto3",
    "python3-swiftclient", "python3-pymysql", "python3-psycopg", "python3-dateutil",
    "python3-tenacity", "python3-zstandard", "zstd", "ca-certificates",
)  # fmt: skip
#: mounts /proc, /dev (and the host's /tmp unless $1 is "-") into root $2, then chroot
_ENTER = r"""
set -e
tmp=$1 root=$2
shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
if [ "$tmp" = tmp ]; then mount --rbind /tmp "$root/tmp"; fi
exec chroot "$root" "$@"
"""
#: what a minbase root lacks for apt and the servers (FIELD-NOTES.md)
_APT_CONF = 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n'


class RootBuildError(RuntimeError):
    """A Debian root could not be built (the test that needs it ERRORs)."""


@dataclass(frozen=True)
class Recipe:
    """One root: ``name`` (with its version) is its directory under :data:`ROOTS_DIR`."""

    name: str
    suite: str
    packages: tuple[str, ...]
    #: directories the packages' maintainer scripts would have made
    directories: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return ROOTS_DIR / self.name


#: mysql-server's maintainer script initialises a system instance (and fails in a root): the
#: server's binaries are in mysql-server-core; its secure_file_priv directory is made here
MYSQL_ROOT = Recipe("sid-mysql-1", "sid", ("mysql-server-core", "mysql-client"),
                    ("var/lib/mysql-files",))  # fmt: skip
MARIADB_ROOT = Recipe(
    "trixie-mariadb-1", "trixie", ("mariadb-server", "mariadb-client", "mariadb-backup")
)


def in_root(root: Path, argv: Sequence[str | os.PathLike[str]], *, tmp: bool = True) -> list[str]:
    """``argv`` run inside ``root`` (see the module docstring); the same process id all the
    way (``unshare`` without ``--fork``, ``exec`` in the shell, ``chroot`` execs too)."""
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _ENTER,
            "enter-root", "tmp" if tmp else "-", str(root), *map(os.fspath, argv)]  # fmt: skip


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} roots: {message}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, check=False,
                                  stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RootBuildError(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RootBuildError(f"{what}: exit {done.returncode}\n--- {log} ---\n{tail}")


@contextlib.contextmanager
def _locked(recipe: Recipe) -> Iterator[None]:
    ROOTS_DIR.mkdir(parents=True, exist_ok=True)
    with (ROOTS_DIR / f".{recipe.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_root(recipe: Recipe) -> Path:
    """The root of ``recipe``, built first when this machine has none."""
    if recipe.path.is_dir():
        return recipe.path
    with _locked(recipe):
        if recipe.path.is_dir():  # another session built it meanwhile
            return recipe.path
        for stale in ROOTS_DIR.glob(f".{recipe.name}.*"):  # a build killed half-way
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if shutil.which("debootstrap") is None:
            raise RootBuildError("debootstrap is not installed (scripts/bootstrap installs it)")
        work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.", dir=ROOTS_DIR))
        log = ROOTS_DIR / f"{recipe.name}.build.log"
        log.write_text("")
        started = time.monotonic()
        _say(f"building {recipe.path} ({recipe.suite}: {', '.join(recipe.packages)}); "
             f"log in {log}")  # fmt: skip
        try:
            _build(recipe, work, log)
            work.chmod(0o755)
            work.rename(recipe.path)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _say(f"built {recipe.path} in {time.monotonic() - started:.0f} s")
    return recipe.path


def _build(recipe: Recipe, work: Path, log: Path) -> None:
    _run(["debootstrap", "--variant=minbase", recipe.suite, str(work), MIRROR],
         f"debootstrap {recipe.suite}", log)  # fmt: skip
    (work / "etc/apt/apt.conf.d/99pitr-frozen-mirror").write_text(_APT_CONF)
    policy = work / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", work / "etc/resolv.conf")
    (work / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y",
           "-o", "DPkg::Lock::Timeout=600"]  # fmt: skip
    _run(in_root(work, [*apt, "update"], tmp=False), "apt-get update in the root", log)
    packages = [*recipe.packages, *PYTHON_PACKAGES]
    _run(in_root(work, [*apt, "install", "--no-install-recommends", *packages], tmp=False),
         f"apt-get install {' '.join(recipe.packages)} in the root", log)  # fmt: skip
    _run(in_root(work, [*apt, "clean"], tmp=False), "apt-get clean in the root", log)
    for directory in recipe.directories:
        (work / directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    _run(in_root(work, ["python3", "-m", "venv", "--system-site-packages", VENV], tmp=False),
         "the root's virtualenv for pitr", log)  # fmt: skip


_WHEEL: list[Path] = []
_INSTALLED: dict[Path, str] = {}


def pitr_wheel() -> Path:
    """The wheel of the pitr under test, built once per session (from the tree this harness
    belongs to, as ``scripts/bootstrap`` installs it on the host)."""
    if _WHEEL:
        return _WHEEL[0]
    tree = Path(__file__).resolve().parents[2]
    out = make_base_dir("pitr-wheel-")
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wheels = sorted(out.glob("pitr-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RootBuildError(f"building pitr's wheel failed: {done.stderr[-2000:]}")
    _WHEEL.append(wheels[0])
    return wheels[0]


def install_pitr(root: Path) -> str:
    """The pitr under test in a virtualenv of this session inside the root (under /tmp: every
    session its own, removed at its end; the root's shared one only lends its pip), made once
    per session; returns the root's path of its ``pitr`` command."""
    if root not in _INSTALLED:
        wheel = pitr_wheel()
        venv = make_base_dir("pitr-root-venv-")
        log = venv.with_name(f"{venv.name}.log")
        _run(in_root(root, ["python3", "-m", "venv", "--system-site-packages", "--without-pip",
                            str(venv)]), f"a virtualenv in {root}", log)  # fmt: skip
        _run(in_root(root, [f"{VENV}/bin/pip", "--python", f"{venv}/bin/python", "install",
                            "-q", "--no-deps", "--no-index", str(wheel)]),
             f"installing pitr into {root}", log)  # fmt: skip
        log.unlink()
        _INSTALLED[root] = f"{venv}/bin/pitr"
    return _INSTALLED[root]
