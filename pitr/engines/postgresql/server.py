"""One PostgreSQL instance as pitr drives it: connect, start, stop, wait, run its tools.

pitr may run as root or as the cluster's owner; PostgreSQL's own programs always run as the
owner of the data directory (``runuser``). ``start_command``/``stop_command`` (a service
manager) may return before the server is up or down: pitr waits and checks for itself.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitr.config.settings import InstanceSettings
from pitr.engines import proc
from pitr.errors import PreconditionFailed, ToolFailed

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("pitr.postgresql")
SERVER_LOG = "pitr-server.log"
DEFAULT_OS_USER = "postgres"
STUCK_GRACE = 10.0  # seconds an archiver failing already gets to archive something


def default_bindir() -> str | None:
    """The newest ``/usr/lib/postgresql/*/bin`` (Debian's layout), if any."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    return candidates[-1] if candidates else None


@dataclass(frozen=True)
class ArchiverState:
    """pg_stat_archiver at one moment: failures so far, and whether the last attempt failed."""

    failed_count: int
    stuck: bool
    at: float  # time.monotonic()


class PgServer:
    """A PostgreSQL cluster at ``datadir``, reached as ``settings`` say."""

    def __init__(
        self,
        settings: InstanceSettings,
        *,
        datadir: str | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        path = datadir or settings.datadir
        if not path:
            raise PreconditionFailed(
                f"instance {settings.name}: datadir is not configured",
                hint="set datadir in [instances.NAME]",
            )
        self.datadir = Path(path)
        self.port = port if port is not None else settings.port
        self.bindir = settings.bindir or default_bindir()
        self.env = dict(env or {})

    # -- tools and users --------------------------------------------------------------------

    def tool(self, name: str) -> str:
        return proc.find_tool(name, self.bindir, hint="install PostgreSQL or set bindir")

    def control_tools(self) -> list[str]:
        """The programs stopping and starting this instance takes: ``pg_ctl`` unless both
        ``start_command`` and ``stop_command`` are configured."""
        s = self.settings
        return [] if s.start_command and s.stop_command else ["pg_ctl"]

    def require_tools(self, names: list[str]) -> None:
        """Find every program an operation will run before it changes anything: one missing
        half-way would leave a directory restored, stopped or swapped for nothing (exit 6)."""
        missing = []
        for name in names:
            try:
                proc.find_tool(name, self.bindir)
            except PreconditionFailed:
                missing.append(name)
        if not missing:
            return
        configured = self.settings.bindir
        where = (
            f"bindir {configured} (configured)" if configured
            else f"bindir {self.bindir} (default)" if self.bindir
            else "no bindir (not configured, no /usr/lib/postgresql/*/bin)"
        )  # fmt: skip
        raise PreconditionFailed(
            f"{', '.join(missing)} not found: looked in {where} and on PATH; nothing was changed",
            hint=f"set bindir in [instances.{self.settings.name}] to the directory holding "
            "PostgreSQL's programs (e.g. /usr/lib/postgresql/15/bin)",
        )

    def require_major(self, major: int, what: str, tools: list[str]) -> str:
        """Refuse (exit 6) a major pitr does not know, a data directory of another major, and
        programs (``tools``) of another major; before anything is changed."""
        from pitr.engines.postgresql.versions import require_instance_major

        found = {name: self.tool(name) for name in tools}
        return require_instance_major(what, major, self.datadir, found, self.settings.bindir)

    @property
    def os_user(self) -> str:
        """Who owns (or will own) the data directory: PostgreSQL runs as that user."""
        for path in (self.datadir, self.datadir.parent):
            owner = proc.owner_name(path)
            if owner is None:
                continue
            if owner != "root" or path == self.datadir:
                return owner if owner != "root" else DEFAULT_OS_USER
        return DEFAULT_OS_USER

    def run_tool(self, name: str, *args: str, timeout: float = 600, check: bool = True) -> Any:
        return proc.run(
            [self.tool(name), *args],
            what=name,
            user=self.os_user,
            env=self.env,
            timeout=timeout,
            check=check,
        )

    # -- connections ------------------------------------------------------------------------

    def conninfo(self, dbname: str | None = None) -> dict[str, Any]:
        s = self.settings
        host = s.socket or s.host
        info: dict[str, Any] = {
            "dbname": dbname or s.dbname or "postgres",
            "user": s.user or DEFAULT_OS_USER,
            "connect_timeout": 10,
            "application_name": "pitr",
        }
        if host:
            info["host"] = host
        if self.port:
            info["port"] = self.port
        if s.password:  # passed in memory to libpq, never on a command line
            info["password"] = s.password
        return info

    def connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        import psycopg

        info = self.conninfo(dbname)
        try:
            return psycopg.connect(autocommit=True, **info)
        except psycopg.OperationalError as exc:
            where = f"{info.get('host', 'local socket')}:{info.get('port', 5432)}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PreconditionFailed(
                f"instance {self.settings.name}: cannot connect to PostgreSQL at {where}: {first}"
            ) from None

    @contextmanager
    def session(self, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        conn = self.connect(dbname)
        try:
            yield conn
        finally:
            conn.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.session() as conn:
            return conn.execute(sql, params or None).fetchall()

    # -- state ------------------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid if _not_zombie(pid) else None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def accepts_connections(self) -> bool:
        try:
            with self.session():
                return True
        except PreconditionFailed:
            return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.datadir / SERVER_LOG).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(ln for ln in text.strip().splitlines()[-lines:])

    # -- archiving ------------------------------------------------------------------------

    def archiver_state(self) -> ArchiverState:
        """To compare with later (see ``archiver_failing``)."""
        count, failed_at, archived_at = self.query(
            "SELECT failed_count, last_failed_time, last_archived_time FROM pg_stat_archiver"
        )[0]
        stuck = failed_at is not None and (archived_at is None or failed_at > archived_at)
        return ArchiverState(int(count), stuck, time.monotonic())

    def archiver_failing(self, before: ArchiverState) -> str | None:
        """What is wrong when archive_command keeps failing since ``before``: three more
        failures (PostgreSQL tries three times in a row), or, when it was failing already,
        nothing archived within ``STUCK_GRACE`` seconds (the archiver may sleep a minute
        between rounds). None while it may still succeed. The archiver goes in order: while
        an older file fails, a newer one is never archived."""
        count, last_failed, failed_at, archived_at = self.query(
            "SELECT failed_count, last_failed_wal, last_failed_time, last_archived_time "
            "FROM pg_stat_archiver"
        )[0]
        if failed_at is None or (archived_at is not None and archived_at > failed_at):
            return None
        more = count - before.failed_count
        if more >= 3:
            return f"{more} failures in a row, the last for {last_failed}"
        if before.stuck and time.monotonic() - before.at >= STUCK_GRACE:
            return f"failing since before pitr started, the last failure for {last_failed}"
        return None

    # -- start and stop -----------------------------------------------------------------

    def start(self, *, timeout: float = 300, ready: bool = True) -> None:
        """Start and wait until the postmaster accepts connections (it may still be
        recovering: see ``wait_promoted``). With ``ready=False``, only until the postmaster
        runs: a recovery may take hours before the first connection is accepted (all of it
        with ``hot_standby = off``), and ``wait_promoted`` watches it from there."""
        command = self.settings.start_command
        if command:
            proc.run(["/bin/sh", "-c", command], what="start_command", timeout=timeout)
        else:
            wait = ["-w", "-t", str(int(timeout))] if ready else ["-W"]
            self.run_tool(
                "pg_ctl", "start", "-D", str(self.datadir), "-l",
                str(self.datadir / SERVER_LOG), *wait,
                *(["-o", f"-p {self.port}"] if self.port else []),
                timeout=timeout + 30, check=False,
            )  # fmt: skip
        if ready:
            self._wait(lambda: self.is_running() and self.accepts_connections(), timeout, "start")
        else:
            self._wait(self.is_running, timeout, "start")

    def stop(self, *, timeout: float = 300) -> None:
        """Stop (fast shutdown) and wait until the postmaster process is gone."""
        if not self.is_running():
            return
        command = self.settings.stop_command
        if command:
            proc.run(["/bin/sh", "-c", command], what="stop_command", timeout=timeout)
        else:
            self.run_tool(
                "pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t",
                str(int(timeout)), timeout=timeout + 30, check=False,
            )  # fmt: skip
        self._wait(lambda: not self.is_running(), timeout, "stop")

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        started = time.monotonic()
        while not ready():
            waited = time.monotonic() - started
            if what == "start" and waited > 5 and not self.is_running():
                raise ToolFailed(
                    f"PostgreSQL at {self.datadir} did not start: {self.log_tail() or 'no log'}"
                )
            if waited > timeout:
                raise ToolFailed(
                    f"PostgreSQL at {self.datadir} did not {what} within {timeout:g} s"
                )
            time.sleep(0.1)

    def wait_promoted(self, timeout: float = 24 * 3600) -> None:
        """Wait until recovery has ended (``pg_is_in_recovery()`` false); a postmaster that
        exits on the way (a FATAL in recovery) is a ``ToolFailed`` with its last log lines."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise ToolFailed(
                    f"PostgreSQL at {self.datadir} stopped during recovery: "
                    f"{self.log_tail() or 'see its log'}"
                )
            try:
                if not self.query("SELECT pg_is_in_recovery()")[0][0]:
                    return
            except PreconditionFailed:
                pass  # not accepting connections yet
            if time.monotonic() > deadline:
                raise ToolFailed(f"recovery of {self.datadir} did not finish in {timeout:g} s")
            time.sleep(0.2)


def _not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
