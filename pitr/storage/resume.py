"""Downloads that survive a broken connection: a body cut short (a reset, a truncated
response, a read timeout) is resumed with a ranged request from the byte where it broke, for
as long as the retry budget allows without progress. The caller's checks (size, sha256, zstd
frame) still see one continuous stream."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

from pitr.errors import StorageUnavailable

log = logging.getLogger("pitr.storage")

#: ``open_at(offset)``: the object's bytes from ``offset`` on, and its total size
Opener = Callable[[int], tuple[io.RawIOBase, int]]


class ResumingReader(io.RawIOBase):
    """Reads an object through ``open_at``; ``broken(exc)`` says which errors of a body being
    read are a broken transfer worth resuming (others propagate)."""

    def __init__(
        self,
        open_at: Opener,
        *,
        broken: Callable[[BaseException], bool],
        budget: float,
        describe: str,
    ) -> None:
        self._open_at = open_at
        self._broken = broken
        self._budget = budget
        self._describe = describe
        self._body, self._size = open_at(0)
        self._pos = 0
        self._stalled_since: float | None = None  # first failure since the last progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            try:
                n = self._body.readinto(b) or 0
            except Exception as exc:
                if not self._broken(exc):
                    raise
                self._resume(str(exc))
                continue
            if n == 0 and len(b) > 0 and self._pos < self._size:
                self._resume(f"the response ended at byte {self._pos} of {self._size}")
                continue
            if n:
                self._pos += n
                self._stalled_since = None
            return n

    def _resume(self, why: str) -> None:
        now = time.monotonic()
        self._stalled_since = self._stalled_since or now
        if now - self._stalled_since > self._budget:
            raise StorageUnavailable(
                f"{self._describe}: {why} (gave up after {self._budget:g} s of retries)",
                hint="check that the storage endpoint is up and reachable from this host",
            )
        log.warning("%s: %s; resuming at byte %d", self._describe, why, self._pos)
        self._close_body()
        time.sleep(min(1.0, 0.1 * (1 + now - self._stalled_since)))
        self._body, _ = self._open_at(self._pos)

    def _close_body(self) -> None:
        try:
            self._body.close()
        except Exception as exc:  # a broken connection may fail to close too
            log.debug("%s: closing a broken body: %s", self._describe, exc)

    def close(self) -> None:
        if not self.closed:
            self._close_body()
        super().close()
