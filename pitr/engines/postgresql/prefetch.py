"""Running a plan's log replay: the logs it names are downloaded ahead of the engine, verified
against the catalog, into a spool directory the engine's log fetcher takes them from.

PostgreSQL asks for one WAL file at a time through ``restore_command``; without prefetching,
replay would wait on one repository request per segment. The prefetcher keeps up to ``ahead``
verified files ready (bounded disk use) and fetches ``workers`` at once.

Replay can get ahead of it (``restore_command`` then fetches from the repository itself): a
file it had not consumed when a later one was taken is no longer needed — it is removed, and
what is still queued before that point is skipped, so that stale files never fill the spool
and stall prefetching for the rest of the replay.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pitr.catalog.model import LogSegment
from pitr.errors import PitrError
from pitr.storage.base import Storage
from pitr.storage.transfer import VerifiedReader

log = logging.getLogger("pitr.executor")
REQUESTED = ".requested"  # written by ``pitr wal-fetch`` (see engines/postgresql/archive.py)
PREFETCH_AHEAD = 8  # verified files kept ready in the spool


class Prefetcher:
    """Fetches ``segments`` in order into ``spool`` (as ``<name>``, written atomically)."""

    def __init__(
        self,
        storage: Storage,
        segments: Sequence[LogSegment],
        spool: Path,
        *,
        owner: tuple[int, int] | None = None,
        ahead: int = PREFETCH_AHEAD,
        workers: int = 4,
    ) -> None:
        self.storage = storage
        self.segments = list(segments)
        self.spool = spool
        self.owner = owner
        self.ahead = max(1, ahead)
        self.workers = max(1, workers)
        self.errors: list[PitrError] = []
        self._order = {seg.name: n for n, seg in enumerate(self.segments)}
        self._written: set[str] = set()  # put into the spool (maybe consumed since)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.owner is not None:
            os.chown(self.spool, *self.owner)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _scan(self) -> tuple[set[str], int]:
        """The files waiting in the spool, and the plan index replay has reached: the newest
        file it asked for or took from the spool (-1: none yet). Files before that one still
        waiting were fetched around the spool: they are removed. (Listed under the lock: a
        file being published must not look taken.)"""
        with self._lock:
            try:
                present = {p.name for p in self.spool.iterdir() if not p.name.startswith(".")}
            except FileNotFoundError:
                present = set()
            taken = [self._order[name] for name in self._written if name not in present]
        newest = max([*taken, self._requested()], default=-1)
        for name in sorted(present):
            if self._order.get(name, newest) < newest:
                (self.spool / name).unlink(missing_ok=True)
                present.discard(name)
        return present, newest

    def _requested(self) -> int:
        """Plan index of the file ``restore_command`` asked for last (-1: none, or not one of
        the plan's segments, e.g. a history file)."""
        try:
            name = (self.spool / REQUESTED).read_text().strip()
        except OSError:
            return -1
        return self._order.get(name, -1)

    def _run(self) -> None:
        queue = list(self.segments)
        running: list[Future[None]] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="prefetch") as pool:
            while (queue or running) and not self._stop.is_set():
                running = [f for f in running if not f.done()]
                present, passed = self._scan()
                while queue and self._order[queue[0].name] < passed:
                    queue.pop(0)  # replay is already beyond it
                while (
                    queue
                    and len(running) < self.workers
                    and (len(present) + len(running) < self.ahead)
                ):
                    running.append(pool.submit(self._fetch, queue.pop(0)))
                self._stop.wait(0.05)

    def _fetch(self, seg: LogSegment) -> None:
        if self._stop.is_set():
            return
        tmp = self.spool / f".{seg.name}.tmp"
        try:
            with VerifiedReader(self.storage, seg.object) as reader, tmp.open("wb") as out:
                while data := reader.read(1 << 20):
                    out.write(data)
            if self.owner is not None:
                os.chown(tmp, *self.owner)
            with self._lock:
                os.replace(tmp, self.spool / seg.name)
                self._written.add(seg.name)
        except PitrError as exc:
            log.error("prefetch of %s failed: %s", seg.name, exc.message)
            self.errors.append(exc)
            tmp.unlink(missing_ok=True)
        except OSError as exc:  # the spool went away: recovery is over
            log.debug("prefetch of %s stopped: %s", seg.name, exc)
            tmp.unlink(missing_ok=True)
