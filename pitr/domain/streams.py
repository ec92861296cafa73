"""What every streaming stage reads from: storage drivers, compression and encryption."""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    """What ``put`` consumes: anything with ``read(n)`` returning bytes, b"" at the end."""

    def read(self, n: int = -1, /) -> bytes: ...
