"""The storage interface every repository driver implements, and what they share.

The interface knows keys and bytes, nothing about databases. Keys are ``/``-separated relative
paths; listing is by plain string prefix and returns keys in byte order. A missing key raises
``ObjectNotFound`` in every driver; a create-if-absent write that loses raises ``ObjectExists``.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from pitr.domain.streams import Readable
from pitr.errors import RepositoryError

MiB = 1024 * 1024
FIRST_PART_SIZE = 8 * MiB
PARTS_PER_SIZE_STEP = 1000
MAX_PART_SIZE = 5 * 1024 * MiB


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed or stat'ed. ``size`` is the stored size in bytes."""

    key: str
    size: int


@dataclass(frozen=True)
class PutResult:
    """What a completed upload wrote: stored size and sha256, confirmed by the backend."""

    key: str
    size: int
    sha256: str


def part_size(index: int, first: int = FIRST_PART_SIZE, step: int = PARTS_PER_SIZE_STEP) -> int:
    """Size of part ``index`` (0-based) of a stream of unknown length.

    Sizes double every ``step`` parts, so 10,000 parts of an 8 MiB start reach ~8 TiB, past
    S3's 5 TB object limit, while small streams keep small parts (and little memory).
    """
    return min(first << (index // step), MAX_PART_SIZE)


def read_full(source: Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; fewer only at end of stream."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def validate_key(key: str) -> str:
    """Refuse keys that could escape the repository or confuse a backend."""
    if (
        not key
        or key.startswith("/")
        or key.endswith("/")
        or "\x00" in key
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise RepositoryError(f"invalid object key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or key-like (it may end with ``/`` or a partial name)."""
    parts = prefix.split("/")
    if prefix.startswith("/") or "\x00" in prefix or any(p in ("", ".", "..") for p in parts[:-1]):
        raise RepositoryError(f"invalid listing prefix {prefix!r}")
    if parts[-1] in (".", ".."):
        raise RepositoryError(f"invalid listing prefix {prefix!r}")
    return prefix


class ChunkReader(io.RawIOBase):
    """A readable file object over an iterator of byte chunks (SDK download bodies)."""

    def __init__(self, chunks: Iterator[bytes], close: object = None) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._pos = 0
        self._on_close = close

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buffer):
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            self._pos = 0
        n = min(len(b), len(self._buffer) - self._pos)
        b[:n] = self._buffer[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed and callable(self._on_close):
            self._on_close()
        super().close()


class Storage(ABC):
    """A repository backend. Implementations must be safe to use from several threads."""

    #: whether ``put(..., if_absent=True)`` is atomic on this backend
    supports_create_if_absent: bool = True

    @abstractmethod
    def describe(self) -> str:
        """The repository location, for messages (never contains secrets)."""

    @abstractmethod
    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        """Stream ``source`` to ``key``. Visible only once complete, size and checksum confirmed.

        With ``if_absent`` the write fails with ``ObjectExists`` when ``key`` already exists.
        """

    @abstractmethod
    def open(self, key: str) -> io.RawIOBase:
        """A readable stream of the object's bytes; ``ObjectNotFound`` if missing."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size of ``key``; ``ObjectNotFound`` if missing."""

    @abstractmethod
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (and sorts after ``start_after``, when
        given), in key order, fetched page by page."""

    @abstractmethod
    def list_prefixes(self, prefix: str) -> tuple[str, ...]:
        """The distinct ``prefix + NAME + "/"`` "directories" one level below ``prefix``
        (which must be empty or end with ``/``), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> PutResult:
        return self.put(key, io.BytesIO(data), if_absent=if_absent)

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def exists(self, key: str) -> bool:
        from pitr.errors import ObjectNotFound

        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True
