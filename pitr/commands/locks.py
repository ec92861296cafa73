"""The instance lock: one ``backup``/``archive``/``expire``/``recover`` per instance at a time.

Two layers, taken in this order and released in reverse:

1. a local ``flock`` on ``<lock_dir>/<instance>.lock``. It serialises runs on this host even when
   the repository is slow or unreachable, and the kernel drops it when its holder dies, however
   it dies. The file's content (host, pid, command, start) is only there for humans.
2. a lock object in the repository (``Layout(instance).lock``), created if absent. It serialises
   runs on different hosts sharing the repository. A process cannot be checked on another host,
   so an object left by another host is never broken automatically: past ``stale_after``
   (``[locks] stale_hours``) the message tells the operator which key to remove if that host is
   really gone. An object left by this host is taken over when the local flock proves that no
   process here holds the lock: the flock of the lock file the object names (ours, or another
   user's ``lock_dir``) is free. That proof holds for a holder killed and never reaped (a
   zombie still answers ``kill(pid, 0)``) and for a recorded pid since reused by an unrelated
   process; the pid itself is never consulted.

On Swift two racing creators can both "win"; every creator therefore reads the object back and
the one whose random token is not there backs off.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pitr.catalog.layout import Layout
from pitr.domain.timeutil import format_time, from_document, utcnow
from pitr.errors import (
    FormatError,
    LockHeld,
    ObjectExists,
    ObjectNotFound,
    PitrError,
    PreconditionFailed,
)
from pitr.storage.base import Storage

if TYPE_CHECKING:
    from pitr.catalog.store import CatalogStore
    from pitr.config.settings import Settings

log = logging.getLogger("pitr.locks")

POLL_INTERVAL = 0.5  # seconds between attempts while waiting (--lock-wait)
WAIT_HINT = "wait for it to finish, or pass --lock-wait SECONDS"
NOT_A_LOCK = (ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded in the local file or the repository object."""

    host: str
    pid: int
    command: str
    since: datetime | None
    token: str
    lock_file: str | None = None  # the local file its holder flocked (None: older documents)

    def describe(self) -> str:
        since = format_time(self.since) or "an unknown time"
        return f"'{self.command}' (pid {self.pid} on {self.host}) since {since}"


def _parse(raw: bytes) -> Holder:
    """A lock document; raises one of ``NOT_A_LOCK`` if it is not one."""
    doc = json.loads(raw)
    if doc["kind"] != "lock" or not isinstance(doc["pid"], int) or doc["pid"] <= 0:
        raise ValueError("not a lock document")
    since = from_document(doc["acquired"])
    lock_file = doc.get("lock_file")
    return Holder(
        str(doc["host"]),
        doc["pid"],
        str(doc["command"]),
        since,
        str(doc["token"]),
        lock_file if isinstance(lock_file, str) else None,
    )


def _flock_free(path: str) -> bool:
    """True when no process holds a flock on ``path`` (a missing file: nobody can). False
    when one does, or when this user cannot tell (another user's private ``lock_dir``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the probe's shared lock
    return True


class InstanceLock:
    """``with InstanceLock(storage, "main", lock_dir, "backup"):`` holds both layers.

    Raises ``LockHeld`` (exit 75) when another run holds either layer, after retrying every
    0.5 s for up to ``wait`` seconds; ``FormatError`` when the repository object is corrupt.
    Any exception inside the block (``Interrupted`` from SIGTERM, ``KeyboardInterrupt``)
    still releases the lock.
    """

    def __init__(
        self,
        storage: Storage,
        instance: str,
        lock_dir: str,
        command: str,
        *,
        wait: float = 0.0,
        stale_after: float = 6 * 3600,
        clock: Callable[[], datetime] = utcnow,
        host: str | None = None,
        pid: int | None = None,
        resource: str = "instance",
    ) -> None:
        self.storage = storage
        self.instance = instance
        # Layout() validates the instance name used for the local file too.
        self.key = Layout(instance).lock_for(resource)
        suffix = "" if resource == "instance" else f".{resource}"
        self.path = Path(lock_dir).absolute() / f"{instance}{suffix}.lock"
        self.command = command
        self.wait = wait
        self.stale_after = stale_after
        self.clock = clock
        # Resolved per lock, not at import: a forked child has its own pid.
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.token = secrets.token_hex(16)
        self._fd: int | None = None

    def __enter__(self) -> InstanceLock:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self._acquire()
                return self
            except LockHeld:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                time.sleep(min(POLL_INTERVAL, remaining))

    def __exit__(self, _type: object, exc: object, _traceback: object) -> None:
        try:
            self._release_object()
        except PitrError as error:
            if exc is None:
                raise
            # Keep the original exception (and its exit code); the next run of this host
            # takes the object over since our pid will be gone.
            log.warning("could not release the lock object %s: %s", self.key, error.message)
        finally:
            self._unlock_local()

    # the local layer
    def _acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise PreconditionFailed(
                f"cannot open the lock file {self.path}: {exc.strerror}",
                hint="lock_dir (configuration) must be a directory writable by this user",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._local_holder(fd)
            os.close(fd)
            raise self._held(holder) from None
        self._fd = fd
        try:
            doc = {"format": "1.0", "kind": "lock", "host": self.host, "pid": self.pid}
            doc |= {"command": self.command, "acquired": format_time(self.clock())}
            doc |= {"lock_file": str(self.path)}
            data = json.dumps(doc | {"token": self.token}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data + b"\n", 0)  # the same document, for humans and LockHeld
            self._acquire_object(data)
        except BaseException:
            self._unlock_local()
            raise

    def _local_holder(self, fd: int) -> Holder | None:
        """The holder recorded in the local file; None if it has not written it yet."""
        try:
            return _parse(os.pread(fd, 4096, 0))
        except NOT_A_LOCK:
            return None

    def _unlock_local(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)  # the file stays: unlinking a flock'ed file races with new openers

    # the repository layer
    def _acquire_object(self, data: bytes) -> None:
        try:
            self.storage.put_bytes(self.key, data, if_absent=True)
        except ObjectExists:
            holder = self._read_object()
            if holder is None or not self._abandoned(holder):
                raise self._held(holder) from None
            log.warning(
                "taking over %s from %s: no process on this host holds its lock file",
                self.key,
                holder.describe(),
            )
            self.storage.delete(self.key)
            try:
                self.storage.put_bytes(self.key, data, if_absent=True)
            except ObjectExists:
                raise self._held(self._read_object()) from None
        try:
            current = self._read_object()
        except BaseException:
            with contextlib.suppress(PitrError):
                self._release_object()
            raise
        if current is None or current.token != self.token:
            raise self._held(current)  # lost a race (Swift): the other creator's object stays

    def _abandoned(self, holder: Holder) -> bool:
        """Proven free: left by this host, and nobody here holds the flock of its lock file
        (ours is held by this run; another ``lock_dir``'s is probed)."""
        if holder.host != self.host:
            return False
        if holder.lock_file is None or holder.lock_file == str(self.path):
            return True
        return _flock_free(holder.lock_file)

    def _read_object(self) -> Holder | None:
        """The repository object's holder; None if the object is gone."""
        try:
            raw = self.storage.get_bytes(self.key)
        except ObjectNotFound:
            return None
        try:
            return _parse(raw)
        except NOT_A_LOCK:
            raise FormatError(
                f"the lock object {self.key} in {self.storage.describe()} is corrupt",
                hint=f"make sure no pitr run uses instance {self.instance!r}, then delete it",
            ) from None

    def _release_object(self) -> None:
        """Delete the repository object, but only if it is still ours."""
        current = self._read_object()
        if current is not None and current.token == self.token:
            self.storage.delete(self.key)
        else:
            log.warning("the lock object %s was no longer ours; left as it is", self.key)

    def _held(self, holder: Holder | None) -> LockHeld:
        who = holder.describe() if holder else "another pitr run"
        message = f"instance {self.instance!r} is locked by {who}"
        hint = WAIT_HINT
        if holder and holder.host == self.host and holder.lock_file not in (None, str(self.path)):
            hint = (
                f"it holds {holder.lock_file} (another lock_dir on this host); {WAIT_HINT}, or "
                f"if no pitr runs there, remove the lock object {self.key}"
            )
        elif holder and holder.host != self.host and holder.since is not None:
            age = (self.clock() - holder.since).total_seconds()
            if age > self.stale_after:
                hint = (
                    f"held for {age / 3600:.1f} h; if host {holder.host} is gone, remove the "
                    f"lock object {self.key} from the repository {self.storage.describe()}"
                )
        return LockHeld(message, hint=hint)


def lock_for(
    settings: Settings, store: CatalogStore, command: str, wait: float, resource: str = "instance"
) -> InstanceLock:
    """The lock of ``store``'s instance, as configured (``lock_dir``, ``[locks]``)."""
    return InstanceLock(
        store.storage,
        store.instance,
        settings.lock_dir,
        command,
        wait=wait,
        stale_after=settings.locks.stale_hours * 3600,
        resource=resource,
    )
