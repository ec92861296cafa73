"""Throwaway MariaDB / MySQL servers run as root on a free port, binary log enabled: the host's
MariaDB 10.11, or a server inside a Debian root (``roots``: MariaDB 11.8, MySQL 9.x), whose
paths under /tmp are the same inside and outside."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pymysql
import pymysql.connections

from .common import (
    ServerStartError,
    free_port,
    log_tail,
    make_base_dir,
    remove_dir,
    start_process,
    stop_process,
    wait_until,
)
from .roots import in_root

#: Options given to both mariadb-install-db and mariadbd (keep the data files small).
INNODB_OPTIONS = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M")
MYSQL_INNODB_OPTIONS = ("--innodb-buffer-pool-size=32M", "--innodb-redo-log-capacity=16M")


class MariaDBServer:
    """One MariaDB server under ``base_dir`` (``/tmp/pm-*``; short for the socket path).

    Layout: ``data/`` (datadir), ``binlog/`` (``mysql-bin.*`` + index), ``tmp/`` (its own
    ``--tmpdir``: concurrent servers never share ``/tmp`` for InnoDB's temporary files), ``s.sock``,
    ``mariadbd.pid``, ``error.log`` (``--log-error``) and ``stdout.log``.
    """

    host = "127.0.0.1"
    user = "root"

    flavor = "mariadb"

    def __init__(
        self, extra_args: Sequence[str] = (), port: int | None = None, root: Path | None = None
    ) -> None:
        #: the Debian root the server runs in (None: the host's)
        self.root = root
        self.base_dir = make_base_dir("pm-")
        self.datadir = self.base_dir / "data"
        self.binlog_dir = self.base_dir / "binlog"
        self.binlog_dir.mkdir()
        #: a private --tmpdir: servers running at once never share InnoDB's temporary files
        self.tmp_dir = self.base_dir / "tmp"
        self.tmp_dir.mkdir()
        self.socket = self.base_dir / "s.sock"
        self.pid_file = self.base_dir / "mariadbd.pid"
        self.error_log = self.base_dir / "error.log"
        self.stdout_log = self.base_dir / "stdout.log"
        self.port = port if port is not None else free_port()
        #: Extra mariadbd options, e.g. ``["--gtid-strict-mode=1"]``.
        self.extra_args: list[str] = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} datadir={self.datadir}>"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            part
            for part in (log_tail(self.stdout_log, lines), log_tail(self.error_log, lines))
            if part
        )

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run where the server's programs are (the host or the root)."""
        return in_root(self.root, argv) if self.root is not None else list(argv)

    #: the server program and what it takes beyond the options both flavours share
    program = "mariadbd"
    own_options: tuple[str, ...] = ("--binlog-format=ROW", *INNODB_OPTIONS)

    def server_args(self) -> list[str]:
        """The server's command line (``--no-defaults`` must come first)."""
        return [
            self.program,
            "--no-defaults",
            "--user=root",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--log-bin={self.binlog_dir}/mysql-bin",
            "--server-id=1",
            f"--log-error={self.error_log}",
            f"--tmpdir={self.tmp_dir}",
            "--skip-name-resolve",
            *self.own_options,
            *self.extra_args,
        ]

    def init(self) -> None:
        """mariadb-install-db into an empty ``datadir``."""
        self.datadir.mkdir(exist_ok=True)
        self._initialize(self.init_args(), "mariadb-install-db")

    def init_args(self) -> list[str]:
        return [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            f"--tmpdir={self.tmp_dir}",
            *INNODB_OPTIONS,
        ]

    def _initialize(self, argv: list[str], what: str) -> None:
        result = subprocess.run(
            self.command(argv),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise ServerStartError(what, f"exit {result.returncode}", output)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start mariadbd and wait until root can connect over the unix socket."""
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        what = f"{self.flavor} on port {self.port}"
        self.proc = start_process(self.command(self.server_args()), self.stdout_log,
                                  cwd=self.base_dir)  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServerStartError(what, f"server exited {proc.returncode}", self.log_tail())
            self.connect().close()
            return True

        try:
            wait_until(ready, timeout, what, interval=0.05, on_timeout=self.log_tail)
        except ServerStartError:
            stop_process(proc, timeout=5)
            raise

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down cleanly and wait until the process has EXITED.

        SIGTERM makes mariadbd do a normal shutdown (like ``mariadb-admin shutdown``, which
        polls in whole seconds). InnoDB keeps writing after the server stops answering, so the
        data directory is safe to touch only once the process is gone; SIGKILL after
        ``timeout``.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        stop_process(proc, timeout=5)  # SIGKILL if still there; clears the process group
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (a crash)."""
        if self.proc is not None:
            self.proc.kill()
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop and remove ``base_dir`` (kept with PITR_KEEP_TEST_DIRS=1)."""
        try:
            self.stop(timeout=30)
        finally:
            remove_dir(self.base_dir)

    def wipe_datadir(self) -> None:
        """Remove and recreate an empty ``datadir`` (e.g. before ``--copy-back``)."""
        if self.is_running():
            raise RuntimeError("server is running")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir()

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """An autocommit PyMySQL connection as root over the unix socket."""
        return pymysql.connect(
            unix_socket=str(self.socket),
            user=self.user,
            database=database,
            autocommit=True,
            connect_timeout=5,
        )

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; rows ([] if it returns none)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def binlog_files(self) -> list[Path]:
        """Binlog files in ``binlog_dir`` in index order."""
        index = self.binlog_dir / "mysql-bin.index"
        if not index.exists():
            return []
        return [
            self.binlog_dir / Path(line.strip()).name
            for line in index.read_text().splitlines()
            if line.strip()
        ]

    def wait_for_exit(self, timeout: float = 60.0) -> None:
        """Wait for a server stopped by other means (e.g. SHUTDOWN statement) to exit."""
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)


class MySQLServer(MariaDBServer):
    """A MySQL 8.4/9.x server (in a Debian root): GTIDs on, no X plugin (its fixed port)."""

    flavor = "mysql"

    program = "mysqld"
    own_options = ("--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--mysqlx=OFF",
                   *MYSQL_INNODB_OPTIONS)  # fmt: skip

    def init(self) -> None:
        """``mysqld --initialize-insecure`` (root@localhost without a password)."""
        self._initialize(["mysqld", "--no-defaults", "--initialize-insecure", "--user=root",
                          f"--datadir={self.datadir}", f"--tmpdir={self.tmp_dir}",
                          *MYSQL_INNODB_OPTIONS],
                         "mysqld --initialize-insecure")  # fmt: skip
