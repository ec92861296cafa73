"""One MariaDB / MySQL server as pitr drives it: connect, ask, run its tools, stop and start.

The password never reaches a command line: PyMySQL gets it in memory, the engine's tools read
it from a mode-0600 option file (``--defaults-extra-file``) that lives only while they run.
``start_command``/``stop_command`` may return before the server is up or down: pitr waits
(bounded) and checks for itself — a stopped server's process has exited and its InnoDB system
tablespace is no longer locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import shlex
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pitr.config.settings import InstanceSettings
from pitr.engines import proc
from pitr.errors import PreconditionFailed, ToolFailed, UsageError

log = logging.getLogger("pitr.mysql")

#: tool role -> candidate program names, per flavour (first found wins)
TOOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "mariadb": {
        "backup": ("mariadb-backup", "mariabackup"),
        "stream": ("mbstream",),
        "binlog": ("mariadb-binlog", "mysqlbinlog"),
        "client": ("mariadb", "mysql"),
        "server": ("mariadbd", "mysqld"),
    },
    "mysql": {
        "backup": ("xtrabackup",),
        "stream": ("xbstream",),
        "binlog": ("mysqlbinlog",),
        "client": ("mysql",),
        "server": ("mysqld",),
    },
}
SBIN = "/usr/sbin"
START_TIMEOUT = 300.0
STOP_TIMEOUT = 600.0


def _quote(value: str) -> str:
    """A value for a MySQL option file (double-quoted, backslash escapes)."""
    if "\n" in value or "\r" in value:
        raise UsageError("a connection setting contains a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MyServer:
    """A server reached as ``settings`` say (or at ``socket``/``port`` for one pitr started)."""

    def __init__(
        self,
        settings: InstanceSettings,
        *,
        datadir: Path | None = None,
        socket: str | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.flavor = "mysql" if settings.engine == "mysql" else "mariadb"
        self.socket = socket if socket is not None else settings.socket
        self.host = None if socket is not None else settings.host
        self.port = port if port is not None else settings.port
        self.user = settings.user or getpass.getuser()
        self._datadir = datadir
        self._variables: dict[str, str] = {}

    # -- tools ------------------------------------------------------------------------------

    def tool(self, role: str) -> str:
        if role == "backup" and self.settings.backup_tool:
            return proc.find_tool(self.settings.backup_tool, self.settings.bindir)
        names = TOOLS[self.flavor][role]
        for name in names:
            for where in (self.settings.bindir, None, SBIN):
                with contextlib.suppress(PreconditionFailed):
                    return proc.find_tool(name, where)
        raise PreconditionFailed(
            f"{names[0]} not found (bindir {self.settings.bindir or 'unset'}, PATH, {SBIN})",
            hint=f"install {names[0]} or set bindir for instance {self.settings.name}",
        )

    @contextlib.contextmanager
    def option_file(self) -> Iterator[Path]:
        """A ``[client]`` option file with the connection settings, mode 0600, removed after."""
        lines = ["[client]", f"user={_quote(self.user)}"]
        if self.settings.password:
            lines.append(f"password={_quote(self.settings.password)}")
        if self.socket:
            lines.append(f"socket={_quote(self.socket)}")
        if self.host:
            lines.append(f"host={_quote(self.host)}")
        if self.port:
            lines.append(f"port={self.port}")
        fd, name = tempfile.mkstemp(prefix="pitr-client-", suffix=".cnf")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, ("\n".join(lines) + "\n").encode())
            os.close(fd)
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    # -- SQL ----------------------------------------------------------------------------------

    def where(self) -> str:
        return self.socket or f"{self.host or 'localhost'}:{self.port or 3306}"

    def connect(self, timeout: int = 10) -> Any:
        import pymysql

        args: dict[str, Any] = {"user": self.user, "connect_timeout": timeout, "autocommit": True}
        if self.settings.password:
            args["password"] = self.settings.password
        if self.socket:
            args["unix_socket"] = self.socket
        else:
            args["host"] = self.host or "localhost"
            args["port"] = self.port or 3306
        try:
            return pymysql.connect(**args)
        except pymysql.MySQLError as exc:
            raise PreconditionFailed(
                f"instance {self.settings.name}: cannot connect to {self.flavor} at "
                f"{self.where()}: {exc.args[-1] if exc.args else exc}"
            ) from None

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import pymysql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise ToolFailed(f"{self.flavor} at {self.where()}: {sql.split(maxsplit=1)[0]} failed: "
                             f"{exc.args[-1] if exc.args else exc}") from None  # fmt: skip
        finally:
            conn.close()

    def variables(self, *names: str) -> dict[str, str]:
        """Global variables (cached for this object)."""
        wanted = [n for n in names if n not in self._variables]
        if wanted:
            marks = ", ".join(["%s"] * len(wanted))  # MySQL 8+ has no information_schema copy
            rows = self.query(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})",
                              *[w.lower() for w in wanted])  # fmt: skip
            self._variables.update({str(k).lower(): str(v or "") for k, v in rows})
        return {n: self._variables.get(n, "") for n in names}

    def accepts_connections(self) -> bool:
        try:
            self.connect(timeout=3).close()
            return True
        except PreconditionFailed:
            return False

    def binary_logs(self) -> list[tuple[str, int]]:
        """``SHOW BINARY LOGS``: every binlog the server has, oldest first; the last is open."""
        return [(str(r[0]), int(r[1])) for r in self.query("SHOW BINARY LOGS")]

    def binlog_status(self) -> tuple[str, int] | None:
        """The open binlog and its size now; None when the binary log is off. MySQL 8.4+ and
        9.x know only ``SHOW BINARY LOG STATUS`` (8.2+), MariaDB ``SHOW MASTER STATUS``."""
        sql = "SHOW BINARY LOG STATUS" if self.flavor == "mysql" else "SHOW MASTER STATUS"
        try:
            rows = self.query(sql)
        except ToolFailed:
            if self.flavor != "mysql":
                raise
            rows = self.query("SHOW MASTER STATUS")  # MySQL 8.0 and 8.1
        return (str(rows[0][0]), int(rows[0][1])) if rows else None

    def gtid_position(self) -> str:
        """The GTID state the binlog has reached (MariaDB position / MySQL executed set)."""
        sql = "SELECT @@GLOBAL.gtid_binlog_pos" if self.flavor == "mariadb" else (
            "SELECT @@GLOBAL.gtid_executed")  # fmt: skip
        return str(self.query(sql)[0][0] or "").replace("\n", "")

    def system(self) -> str:
        """The identity binlogs and backups are recorded under: MariaDB's server_id, MySQL's
        server_uuid."""
        if self.flavor == "mysql":
            return self.variables("server_uuid")["server_uuid"]
        return self.variables("server_id")["server_id"]

    # -- places -------------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        if self._datadir is None:
            configured = self.settings.datadir
            self._datadir = Path(configured or self.variables("datadir")["datadir"])
        return self._datadir

    def binlog_basename(self) -> Path:
        """``log_bin_basename`` (e.g. /var/log/mysql/mysql-bin); ``binlog_dir`` overrides its
        directory."""
        base = self.variables("log_bin_basename")["log_bin_basename"]
        if not base:
            raise PreconditionFailed(
                f"instance {self.settings.name}: the binary log is off (log_bin_basename empty)",
                hint="start the server with log_bin (and binlog_format = ROW)",
            )
        path = Path(base)
        if not path.is_absolute():
            path = self.datadir / path
        if self.settings.binlog_dir:
            path = Path(self.settings.binlog_dir) / path.name
        return path

    # -- process ------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The server's process id, from its pid file (asked from the server when it runs)."""
        candidates = []
        with contextlib.suppress(PreconditionFailed, ToolFailed):
            candidates.append(Path(self.variables("pid_file")["pid_file"]))
        candidates += sorted(self.datadir.glob("*.pid")) if self.datadir.is_dir() else []
        for path in candidates:
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text().split()[0])
                if alive(pid):
                    return pid
        return None

    def datadir_locked(self) -> bool:
        """Does a server hold the InnoDB system tablespace of ``datadir`` open and locked?"""
        ibdata = self.datadir / "ibdata1"
        try:
            fd = os.open(ibdata, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[str] | None:
        """Stop with ``stop_command`` (else SIGTERM, or SQL ``SHUTDOWN``) and wait until the
        process has exited and the data directory is free. Returns the stopped server's
        command line (to start it again the same way when no ``start_command`` is set)."""
        pid = self.pid()
        argv = _cmdline(pid) if pid else None
        if self.settings.stop_command:
            proc.run(["/bin/sh", "-c", self.settings.stop_command], what="stop_command",
                     timeout=timeout)  # fmt: skip
        elif pid is not None and _may_signal(pid):
            os.kill(pid, signal.SIGTERM)  # a normal shutdown, as SHUTDOWN does
        elif self.accepts_connections():
            self.query("SHUTDOWN")
        wait_for(lambda: not (pid and alive(pid)) and not self.datadir_locked(), timeout,
                 f"{self.flavor} at {self.datadir} to stop")  # fmt: skip
        log.info("%s at %s stopped", self.flavor, self.datadir)
        return argv

    def kill(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGKILL the server and wait until it is gone: only for one pitr started and whose
        directory is thrown away (one waiting for disk space answers no shutdown for a
        minute)."""
        pid = self.pid()
        if pid is not None and _may_signal(pid):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not alive(pid), timeout, f"{self.flavor} at {self.datadir} to die")
            log.info("%s at %s killed", self.flavor, self.datadir)

    def start(self, argv: list[str] | None = None, timeout: float = START_TIMEOUT) -> None:
        """Start with ``start_command`` (else ``argv``, the command line it ran with before)
        and wait until it accepts connections."""
        if self.settings.start_command:
            proc.run(["/bin/sh", "-c", self.settings.start_command], what="start_command",
                     timeout=timeout)  # fmt: skip
            child = None
        elif argv:
            log.info("starting %s again as it ran: %s", self.flavor, shlex.join(argv))
            child = proc.detach(argv, self.datadir.parent / f"{self.datadir.name}.pitr-server.log")
        else:
            raise PreconditionFailed(
                f"instance {self.settings.name}: no start_command to start {self.flavor}",
                hint="set start_command (e.g. 'systemctl start mariadb') for the instance",
            )

        def up() -> bool:
            if child is not None and child.poll() is not None:
                raise ToolFailed(f"{self.flavor} exited {child.returncode} while starting")
            return self.accepts_connections()

        wait_for(up, timeout, f"{self.flavor} at {self.where()} to accept connections")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _may_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="surrogateescape") for a in raw.split(b"\0") if a] or None


def wait_for(ready: Callable[[], bool], timeout: float, what: str, longest: float = 0.2) -> None:
    """Poll ``ready`` until true, every 0.05 s growing to ``longest``; ``ToolFailed`` naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not ready():
        if time.monotonic() > deadline:
            raise ToolFailed(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, longest)
