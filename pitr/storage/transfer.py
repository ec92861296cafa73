"""The streaming pipeline: read → zstd → age → sha256 → upload in parts, and back with
verification.

Nothing is staged: the compressor pulls from the source as the encryption (when the repository
encrypts, docs/encryption.md) pulls compressed bytes and the storage driver pulls what it
stores, part by part. zstd runs in its own worker threads (outside the GIL), the driver hashes
what it sends and uploads parts in parallel. On the way back every byte read is hashed, the
zstd frame checksum is checked, and sizes are compared before the caller may trust the data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pitr.domain.streams import Readable
from pitr.errors import ObjectNotFound, VerificationFailed
from pitr.storage.base import MiB, PutResult, Storage

if TYPE_CHECKING:
    from pitr.config.settings import RepositorySettings
    from pitr.crypt.readahead import ReadAhead

READ_SIZE = 1 * MiB
WHOLE_MAX = 64 * MiB  # compressed in one call from a memory map (a WAL segment)


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Compression:
    """How objects are compressed on their way into the repository."""

    algorithm: Literal["zstd", "none"] = "zstd"
    level: int = 3
    threads: int = 0  # 0: one worker per CPU
    encrypt: bool = False  # to the installed keyring's recipients (pitr.crypt)

    @classmethod
    def from_settings(cls, repo: RepositorySettings) -> Compression:
        return cls(
            repo.compression,
            repo.compression_level,
            repo.compression_threads,
            repo.encryption == "age",
        )

    @property
    def suffix(self) -> str:
        """Object name suffix, so an operator can tell what a file is by hand."""
        return (".zst" if self.algorithm == "zstd" else "") + (".age" if self.encrypt else "")

    @property
    def codec(self) -> str:
        """How a stored object is encoded, as the catalog's summary pages record it."""
        return codec_of(self.algorithm, "age" if self.encrypt else "none")


def codec_of(compression: str, encryption: str) -> str:
    """``zstd``, ``none``, ``zstd+age`` or ``none+age``."""
    return compression if encryption == "none" else f"{compression}+{encryption}"


def parse_codec(codec: str) -> tuple[Literal["zstd", "none"], Literal["none", "age"]]:
    compression, _, encryption = codec.partition("+")
    return compression, encryption or "none"  # type: ignore[return-value]


@dataclass(frozen=True)
class StoredObject:
    """An object as written: what the catalog records to fetch and verify it later."""

    key: str
    size: int  # stored (compressed) bytes
    sha256: str  # of the stored bytes
    raw_size: int  # bytes before compression
    compression: Literal["zstd", "none"]
    raw_sha256: str | None = None  # only when asked for (e.g. to compare file contents)
    encryption: Literal["none", "age"] = "none"

    @property
    def codec(self) -> str:
        return codec_of(self.compression, self.encryption)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "raw_size": self.raw_size,
            "compression": self.compression,
        }
        if self.raw_sha256 is not None:
            doc["raw_sha256"] = self.raw_sha256
        if self.encryption != "none":
            doc["encryption"] = self.encryption
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> StoredObject:
        return cls(
            key=doc["key"],
            size=int(doc["size"]),
            sha256=doc["sha256"],
            raw_size=int(doc["raw_size"]),
            compression=doc["compression"],
            raw_sha256=doc.get("raw_sha256"),
            encryption=doc.get("encryption", "none"),
        )


class _CountingReader:
    """Counts (and optionally hashes) the bytes pulled through it from ``source``."""

    def __init__(
        self,
        source: Readable,
        hash_raw: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._source = source
        self._hash = hashlib.sha256() if hash_raw else None
        self._progress = progress
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        self.consumed(data)
        return data

    def consumed(self, data: Any) -> None:
        """Count (and hash) ``data``, read from the source here or past this reader."""
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        if self._progress is not None:
            self._progress(len(data))

    def hexdigest(self) -> str | None:
        return self._hash.hexdigest() if self._hash is not None else None


def _workers(threads: int) -> int:
    """zstandard's ``threads`` for ours: 0 is one per CPU; one thread is zstd's own
    single-threaded mode (0 there), which costs less than one worker thread."""
    n = threads or os.cpu_count() or 1
    return 0 if n == 1 else n


def upload(
    storage: Storage,
    key: str,
    source: Readable,
    compression: Compression,
    *,
    if_absent: bool = False,
    hash_raw: bool = False,
    size: int = -1,
) -> StoredObject:
    """Compress ``source`` into ``key`` as it is read; return what was stored. ``size``, when
    known, lets zstd fit its parameters to the input (and is checked: another length fails)."""
    raw = _CountingReader(source, hash_raw)
    if compression.algorithm == "zstd":
        import zstandard

        cctx = zstandard.ZstdCompressor(
            level=compression.level, threads=_workers(compression.threads), write_checksum=True
        )
        whole = _compressed_whole(cctx, source, size, raw)
        if whole is not None:
            result = storage.put(key, _encrypted(whole, compression), if_absent=if_absent)
            return _stored(key, result, raw, compression)
        pulled: Any = raw  # zstandard's stubs want IO[bytes]; read() is enough
        with cctx.stream_reader(pulled, size, read_size=READ_SIZE, closefd=False) as compressed:
            result = storage.put(key, _encrypted(compressed, compression), if_absent=if_absent)
    else:
        result = storage.put(key, _encrypted(raw, compression), if_absent=if_absent)
    return _stored(key, result, raw, compression)


def _stored(
    key: str, result: PutResult, raw: _CountingReader, compression: Compression
) -> StoredObject:
    return StoredObject(
        key=key,
        size=result.size,
        sha256=result.sha256,
        raw_size=raw.size,
        compression=compression.algorithm,
        raw_sha256=raw.hexdigest(),
        encryption="age" if compression.encrypt else "none",
    )


def _compressed_whole(
    cctx: Any, source: Readable, size: int, raw: _CountingReader
) -> Readable | None:
    """A file of known ``size`` up to ``WHOLE_MAX`` (a WAL segment), compressed in one call
    from its memory map: the same single zstd frame as the stream gives, for about 15 % less
    CPU (zstd reads the input in place, no window copies). Its raw bytes are counted (and
    hashed) through ``raw``. None for anything else: it is streamed."""
    fileno = getattr(source, "fileno", None)
    if not 0 < size <= WHOLE_MAX or fileno is None:
        return None
    import io
    import mmap

    try:
        fd = fileno()
        if os.fstat(fd).st_size != size or os.lseek(fd, 0, os.SEEK_CUR) != 0:
            return None
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view:
            raw.consumed(view)
            return io.BytesIO(cctx.compress(view))
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _encrypted(source: Readable, compression: Compression) -> Readable:
    if not compression.encrypt:
        return source
    from pitr import crypt

    keyring = crypt.installed()
    if not keyring.encrypts:
        raise AssertionError("encryption asked for without recipients installed")
    return keyring.encrypt(source)


def _decrypted(source: Readable, encryption: str, key: str) -> Readable:
    if encryption == "none":
        return source
    from pitr import crypt

    return crypt.installed().decrypt(source, key)


class VerifiedReader:
    """Reads ``obj`` decrypted and decompressed, in bounded memory; ``finish()`` (called by the
    context manager on a clean exit) drains the rest and raises ``VerificationFailed`` unless
    the stored size, stored sha256, age authentication, zstd frame checksum and raw size all
    match. Nothing read may be trusted before ``finish()`` returns. With ``contents`` False, an
    encrypted object is read as stored (sizes and stored checksum only: no identity needed)."""

    def __init__(
        self,
        storage: Storage,
        obj: StoredObject,
        progress: Callable[[int], None] | None = None,
        *,
        contents: bool = True,
    ) -> None:
        self.obj = obj
        self.raw = 0
        self._finished = False
        self._corrupt: type[Exception] = _NeverRaised
        self._contents = contents or obj.encryption == "none"
        try:
            self._stream = storage.open(obj.key)
        except ObjectNotFound:
            raise VerificationFailed(f"{obj.key}: missing from the repository") from None
        self._stored = _CountingReader(self._stream, hash_raw=True, progress=progress)
        self._reader: Readable = self._stored
        self._ahead: ReadAhead | None = None
        if self._contents and obj.encryption != "none":
            from pitr.crypt.readahead import ReadAhead

            try:
                self._ahead = ReadAhead(_decrypted(self._stored, obj.encryption, obj.key))
            except BaseException:
                self._stream.close()
                raise
            self._reader = self._ahead
        self._plain = self._reader  # before decompression: drained to authenticate its end
        if obj.compression == "zstd" and self._contents:
            import zstandard

            self._corrupt = zstandard.ZstdError
            pulled: Any = self._reader  # zstandard's stubs want IO[bytes]; read() is enough
            self._reader = zstandard.ZstdDecompressor().stream_reader(
                pulled, read_size=READ_SIZE, closefd=False
            )

    def read(self, n: int = -1, /) -> bytes:
        try:
            data = self._reader.read(n if n > 0 else READ_SIZE)
        except self._corrupt as exc:
            raise VerificationFailed(f"{self.obj.key}: does not decompress: {exc}") from None
        self.raw += len(data)
        return data

    def finish(self) -> int:
        if self._finished:
            return self.raw
        self._finished = True
        while self.read(READ_SIZE):
            pass
        while self._plain.read(READ_SIZE):  # bytes after the zstd frame still count
            pass
        while self._stored.read(READ_SIZE):
            pass
        obj, stored = self.obj, self._stored
        problems = []
        if stored.size != obj.size:
            problems.append(f"stored size {stored.size} != {obj.size}")
        if stored.hexdigest() != obj.sha256:
            problems.append("sha256 mismatch")
        if self._contents and self.raw != obj.raw_size:
            problems.append(f"raw size {self.raw} != {obj.raw_size}")
        if problems:
            raise VerificationFailed(f"{obj.key}: {'; '.join(problems)}")
        return self.raw

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
        self._stream.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self.close()


def download(
    storage: Storage,
    obj: StoredObject,
    dest: Writable,
    *,
    progress: Callable[[int], None] | None = None,
    contents: bool = True,
) -> int:
    """Stream ``obj`` into ``dest``, decrypted, decompressed and verified (see
    ``VerifiedReader``). Memory stays bounded whatever the compression ratio. Returns the raw
    bytes written."""
    with VerifiedReader(storage, obj, progress, contents=contents) as reader:
        while data := reader.read(READ_SIZE):
            dest.write(data)
        return reader.finish()


class _NeverRaised(Exception):
    """Stands in for the decompressor's error when nothing is decompressed."""


class _Sink:
    def write(self, data: bytes, /) -> int:
        return len(data)


def verify(
    storage: Storage,
    obj: StoredObject,
    *,
    progress: Callable[[int], None] | None = None,
    contents: bool = True,
) -> None:
    """Read ``obj`` back completely and check it; ``VerificationFailed`` names the problem.
    An encrypted object's contents are checked only with ``contents`` (an identity)."""
    download(storage, obj, _Sink(), progress=progress, contents=contents)


@dataclass(frozen=True)
class Failure:
    """An object that did not read back intact, and why."""

    key: str
    problem: str


def verify_all(
    storage: Storage,
    objects: Sequence[StoredObject],
    *,
    workers: int,
    progress: Callable[[int], None] | None = None,
    contents: bool = True,
) -> list[Failure]:
    """Verify each object, ``workers`` at a time; the failures, in the order given. Encrypted
    objects' contents are checked only with ``contents`` (an identity)."""
    from concurrent.futures import ThreadPoolExecutor  # not on the wal-fetch path

    from pitr.crypt.keyring import WrongIdentity

    def one(obj: StoredObject) -> Failure | None:
        try:
            verify(storage, obj, progress=progress, contents=contents)
        except (VerificationFailed, WrongIdentity) as exc:
            return Failure(obj.key, exc.message)
        return None

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="verify") as pool:
        results = list(pool.map(one, objects))
    return [r for r in results if r is not None]


def fetch(storage: Storage, key: str, codec: str, dest: Writable) -> int:
    """Stream ``key`` into ``dest`` decrypted and decompressed (``codec``: see ``codec_of``),
    when its catalog record is not at hand (a ``restore_command`` fetching by name).
    Integrity rests on age's authentication, the zstd frame's own content checksum and on the
    reader's checks (PostgreSQL verifies every WAL record's CRC). Returns the bytes written;
    ``ObjectNotFound`` when the key is missing."""
    compression, encryption = parse_codec(codec)
    with storage.open(key) as stream:
        return _decompress_into(_decrypted(stream, encryption, key), key, compression, dest)


def read_back(storage: Storage, key: str, codec: str) -> StoredObject:
    """Describe an object already in the repository by reading it whole: its stored and raw
    sizes and sha256 (to tell whether it holds the same content as a local file)."""
    compression, encryption = parse_codec(codec)
    raw = _HashingSink()
    with storage.open(key) as stream:
        stored = _CountingReader(stream, hash_raw=True)
        _decompress_into(_decrypted(stored, encryption, key), key, compression, raw)
    digest = stored.hexdigest() or ""
    return StoredObject(
        key, stored.size, digest, raw.size, compression, raw.hash.hexdigest(), encryption
    )


class _HashingSink:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def _decompress_into(source: Readable, key: str, compression: str, dest: Writable) -> int:
    written = 0
    reader: Readable = source
    corrupt: type[Exception] = _NeverRaised
    if compression == "zstd":
        import zstandard

        corrupt = zstandard.ZstdError
        pulled: Any = source  # zstandard's stubs want IO[bytes]; read() is enough
        reader = zstandard.ZstdDecompressor().stream_reader(
            pulled, read_size=READ_SIZE, closefd=False
        )
    try:
        while data := reader.read(READ_SIZE):
            dest.write(data)
            written += len(data)
    except corrupt as exc:
        raise VerificationFailed(f"{key}: does not decompress: {exc}") from None
    return written
