"""``pitr archive --follow``: continuous binlog shipping.

``mariadb-binlog --read-from-remote-server --raw --stop-never`` (MySQL: ``mysqlbinlog``)
copies the server's binlogs as they are written, byte for byte, into a spool directory
(``<spool_dir>/<instance>/binlog``); every file the copy has moved past (the server rotated) is
shipped like ``pitr archive`` ships it, then removed from the spool. The file still open is
shipped too, up to its last complete transaction, every ``follow_interval`` seconds and when
the follower stops (``pitr.engines.mysql.openship``). The copy needs only a
connection (REPLICATION SLAVE), so this may run on another host than the database.

It runs until SIGTERM/SIGINT (then it ships what is complete and returns normally) or, when
``duration`` is given (``pitr archive --follow --for SECONDS``), for that long. If the copy
stops (the server restarted), it is
started again from the first binlog not yet shipped; a server unreachable for
``GIVE_UP`` seconds ends the run with exit 7 (a service manager restarts it).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.domain.positions import binlog_number
from pitr.domain.timeutil import utcnow
from pitr.engines import proc
from pitr.engines.base import Archived
from pitr.engines.mysql.archive import Shipper, archive_closed
from pitr.engines.mysql.openship import OpenShipper
from pitr.engines.mysql.server import MyServer
from pitr.errors import FormatError, Interrupted, PitrError, ToolFailed

log = logging.getLogger("pitr.mysql")
POLL = 0.5
GIVE_UP = 300.0
REPLICA_ID = 4_200_000_000  # the server id the copy registers with (not a real server)
HEARTBEAT = 5.0  # seconds between the follower's state updates
Beat = Callable[[dict[str, Any]], None]


def spool_files(spool: Path) -> list[Path]:
    found = []
    for path in spool.iterdir():
        with contextlib.suppress(FormatError):
            binlog_number(path.name)
            if path.is_file() and not path.name.startswith("."):
                found.append(path)
    return sorted(found, key=lambda p: binlog_number(p.name))


def _first_unshipped(server: MyServer, logs: list[tuple[str, int]], shipper: Shipper) -> str:
    """Where the copy starts: the open binlog when the closed ones were shipped from the
    binlog directory (pitr runs on the database host); else the first whose name is not
    archived (on another host, names are all there is to go by)."""
    with contextlib.suppress(PitrError, OSError):
        directory = server.binlog_basename().parent
        if all((directory / name).is_file() for name, _ in logs[:-1]):
            return logs[-1][0]
    archived = {k.name for k in shipper.known if k.system == shipper.system}
    for name, _size in logs:
        if name not in archived:
            return name
    return logs[-1][0]


def _ship_closed(spool: Path, shipper: Shipper, *, all_of_them: bool = False) -> list[str]:
    """Ship the spool's closed files; the names shipped (or found archived)."""
    files = spool_files(spool)
    closed = files if all_of_them else files[:-1]
    shipped = []
    for path in closed:
        before = len(shipper.archived) + len(shipper.already)
        shipper.ship(path, rotated=not all_of_them)
        if len(shipper.archived) + len(shipper.already) == before:
            break  # not complete yet: next time
        path.unlink()
        shipped.append(path.name)
    return shipped


class Heartbeat:
    """Every ``HEARTBEAT`` seconds, how far the copy is behind the server's open binlog, handed
    to ``beat`` (pitr writes it to the follower's state file: docs/monitoring.md). ``caught_up``
    is the last time the spool held everything the server had written."""

    def __init__(self, server: MyServer, spool: Path, beat: Beat | None) -> None:
        self.server, self.spool, self.beat = server, spool, beat
        self.started = utcnow()
        self.caught_up: datetime | None = None
        self.due = 0.0

    def __call__(self, *, stopped: bool = False) -> None:
        if self.beat is None or (not stopped and time.monotonic() < self.due):
            return
        self.due = time.monotonic() + HEARTBEAT
        behind = self._behind()
        now = utcnow()
        if behind == 0:
            self.caught_up = now
        state = {"started": self.started, "heartbeat": now, "caught_up": self.caught_up,
                 "behind_bytes": behind, "stopped": now if stopped else None}  # fmt: skip
        try:
            self.beat(state)
        except OSError as exc:
            log.warning("could not write the follower's state: %s", exc.strerror)

    def _behind(self) -> int | None:
        try:
            logs = self.server.binary_logs()
        except PitrError:
            return None
        if not logs:
            return None
        name, size = logs[-1]
        copy = self.spool / name
        return max(0, size - (copy.stat().st_size if copy.is_file() else 0))


def _spool_of(spool_root: Path, instance: str) -> Path:
    spool = spool_root / instance / "binlog"
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    return spool


def _open_file(spool: Path) -> Path | None:
    """The spool copy of the binlog the server writes now."""
    files = spool_files(spool)
    return files[-1] if files else None


def _start_copy(server: MyServer, options: Path, spool: Path, first: str) -> Any:
    argv = [server.tool("binlog"), f"--defaults-extra-file={options}",
            "--read-from-remote-server", "--raw", "--stop-never", f"--result-file={spool}/",
            f"--stop-never-slave-server-id={REPLICA_ID}", first]  # fmt: skip
    log.info("following the binlogs of %s from %s into %s", server.where(), first, spool)
    child = proc.start(argv, stdout=subprocess.DEVNULL)
    return child, proc.StderrTail(child)


def _prepare(server: MyServer, shipper: Shipper, spool: Path) -> list[tuple[str, int]]:
    """Archive what the server closed; empty the spool of what an earlier run left (shipped
    when the server no longer has it, else fetched again); ``SHOW BINARY LOGS``."""
    logs = archive_closed(server, shipper, local=False)  # on disk already (when local)
    names = {name for name, _ in logs}
    for stale in spool_files(spool):  # copies the server still has: fetched again
        if stale.name in names:
            stale.unlink()
    _ship_closed(spool, shipper, all_of_them=True)  # left by an earlier run, now gone
    return logs


def follow_binlogs(
    server: MyServer,
    shipper: Shipper,
    spool_root: Path,
    duration: float | None = None,
    beat: Beat | None = None,
) -> Archived:
    spool = _spool_of(spool_root, server.settings.name)
    heartbeat = Heartbeat(server, spool, beat)
    deadline = None if duration is None else time.monotonic() + duration
    logs = _prepare(server, shipper, spool)
    stop_reason = "time limit"
    opener, interval = OpenShipper(shipper), server.settings.follow_interval
    opener.archived()  # closed since an earlier run shipped them open (a crash, a restart)
    next_open = time.monotonic() + interval
    with server.option_file() as options:
        child, tail = _start_copy(server, options, spool, _first_unshipped(server, logs, shipper))
        down_since: float | None = None
        try:
            while deadline is None or time.monotonic() < deadline:
                opener.closed(_ship_closed(spool, shipper))
                heartbeat()
                if interval and time.monotonic() >= next_open:
                    opener.try_ship(_open_file(spool))
                    next_open = time.monotonic() + interval
                if child.poll() is not None:
                    with contextlib.suppress(ToolFailed):
                        tail.wait("binlog copy")
                    opener.closed(_ship_closed(spool, shipper))
                    if not server.accepts_connections():
                        down_since = down_since or time.monotonic()
                        if time.monotonic() - down_since > GIVE_UP:
                            raise ToolFailed(f"{server.flavor} at {server.where()} unreachable "
                                             f"for {GIVE_UP:g} s; binlog copy stopped")  # fmt: skip
                        time.sleep(2)
                        continue
                    down_since = None
                    logs = archive_closed(server, shipper, local=False)  # closed meanwhile
                    opener.archived()
                    for stale in spool_files(spool):
                        stale.unlink()
                    child, tail = _start_copy(server, options, spool,
                                              _first_unshipped(server, logs, shipper))  # fmt: skip
                time.sleep(POLL)
        except (Interrupted, KeyboardInterrupt):
            stop_reason = "signal"
        finally:
            proc.stop(child)
        try:
            opener.closed(_ship_closed(spool, shipper))
        except PitrError as exc:
            log.warning("could not ship the last closed binlog: %s", exc.message)
        if interval:
            opener.try_ship(_open_file(spool))  # what the server wrote until now
        heartbeat(stopped=True)
    result = shipper.result()
    result.stopped_by, result.spool = stop_reason, str(spool)
    return result
