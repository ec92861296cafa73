"""A PostgreSQL data directory as a list of files, streamed as tar and restored from it.

Scanning follows PostgreSQL's own rules for base backups: the contents of pg_wal and of the
runtime directories, postmaster.pid and friends, temporary files and any old backup_label are
left out; tablespaces (symlinks in pg_tblspc) are followed and archived as
``pg_tblspc/<oid>/...``. Files may change or vanish while they are read (WAL replay repairs
that): a file is sent with the size it had when opened, zero-padded if it shrank.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from pitr.engines.postgresql.pagemap import Ranges, runs
from pitr.errors import FormatError

EMPTIED_DIRS = frozenset(
    {
        "pg_wal",
        "pg_replslot",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_stat_tmp",
        "pg_subtrans",
        "pitr-prefetch",
    }
)
SKIPPED_FILES = frozenset(
    {
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
        "recovery.signal",
        "standby.signal",
        "pitr-server.log",
        "pg_internal.init",
    }
)
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class DataFile:
    """One entry to back up: ``name`` inside the archive, ``source`` on disk."""

    name: str
    source: Path
    size: int
    mtime_ns: int
    mode: int
    is_dir: bool = False


def scan(datadir: Path) -> tuple[list[DataFile], dict[str, str]]:
    """Every file and directory to back up, and the tablespaces (oid -> location)."""
    entries: list[DataFile] = []
    tablespaces: dict[str, str] = {}
    for root, prefix in _roots(datadir, tablespaces):
        if prefix:
            entries.append(_entry(prefix.rstrip("/"), root, is_dir=True))
        for top, dirs, files in os.walk(root):
            rel = Path(top).relative_to(root).as_posix()
            base = prefix if rel == "." else f"{prefix}{rel}/"
            at_top = base == ""
            descend = []
            for d in sorted(dirs):
                if d.startswith("pgsql_tmp"):
                    continue
                entries.append(_entry(base + d, Path(top) / d, is_dir=True))
                if not (at_top and (d in EMPTIED_DIRS or d == "pg_tblspc")):
                    descend.append(d)  # runtime directories are kept empty
            dirs[:] = descend
            for f in sorted(files):
                if f.startswith("pgsql_tmp") or f == "pg_internal.init":
                    continue
                if at_top and f in SKIPPED_FILES:
                    continue
                try:
                    entries.append(_entry(base + f, Path(top) / f))
                except FileNotFoundError:
                    continue  # removed while we looked: not needed
    return entries, tablespaces


def _roots(datadir: Path, tablespaces: dict[str, str]) -> Iterator[tuple[Path, str]]:
    yield datadir, ""
    links = datadir / "pg_tblspc"
    if links.is_dir():
        for link in sorted(links.iterdir()):
            if link.is_symlink():
                tablespaces[link.name] = os.readlink(link)
            yield link.resolve(), f"pg_tblspc/{link.name}/"


def _entry(name: str, source: Path, *, is_dir: bool = False) -> DataFile:
    st = source.stat()
    return DataFile(name, source, 0 if is_dir else st.st_size, st.st_mtime_ns, st.st_mode, is_dir)


def partition(files: list[DataFile], count: int) -> list[list[DataFile]]:
    """Split into ``count`` groups of similar total size (directories go to the first)."""
    groups: list[list[DataFile]] = [[] for _ in range(max(1, count))]
    sizes = [0] * len(groups)
    for f in sorted(files, key=lambda f: (not f.is_dir, -f.size)):
        i = 0 if f.is_dir else sizes.index(min(sizes))
        groups[i].append(f)
        sizes[i] += f.size + BLOCK
    return [sorted(g, key=lambda f: f.name) for g in groups if g]


@dataclass(frozen=True)
class Sent:
    """A file as it went into the archive: the size and mtime it had, and its CRC-32."""

    name: str
    size: int
    mtime_ns: int
    crc32: int


class TarStream:
    """``files`` as a tar archive, produced as it is read (``read(n)``, as the compressor pulls
    it): no pipe, no writer thread, no copy. ``sent`` lists what went in, file by file, once
    the stream has been read to its end."""

    def __init__(self, files: Iterable[DataFile]) -> None:
        self.sent: list[Sent] = []
        self._chunks = self._produce(files)
        self._chunk = b""
        self._at = 0  # how much of ``_chunk`` was read

    def read(self, n: int = -1, /) -> bytes:
        """At most ``n`` bytes (``n`` < 0: the next piece, not the whole rest); b"" at the end."""
        if self._at >= len(self._chunk):
            self._chunk, self._at = next(self._chunks, b""), 0
        chunk = self._chunk
        end = len(chunk) if n < 0 else min(len(chunk), self._at + n)
        if self._at == 0 and end == len(chunk):
            self._at = end
            return chunk  # the whole piece: no copy
        out = chunk[self._at : end]
        self._at = end
        return out

    def _produce(self, files: Iterable[DataFile]) -> Iterator[bytes]:
        for f in files:
            yield from self._entry(f)
        yield bytes(2 * BLOCK)

    def _entry(self, f: DataFile) -> Iterator[bytes]:
        """One file or directory: its header, then its data padded to whole tar blocks."""
        info = tarfile.TarInfo(f.name)
        info.mtime = f.mtime_ns // 1_000_000_000
        info.mode = stat.S_IMODE(f.mode)
        if f.is_dir:
            info.type = tarfile.DIRTYPE
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            return
        try:
            fh = f.source.open("rb")
        except FileNotFoundError:
            return  # dropped during the backup; replay does not need it
        with fh:
            st = os.fstat(fh.fileno())
            info.size = st.st_size
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            crc = 0
            left = st.st_size
            while left:
                chunk = fh.read(min(CHUNK, left)) or bytes(min(CHUNK, left))  # shrank: pad
                crc = zlib.crc32(chunk, crc)
                yield chunk
                left -= len(chunk)
            if st.st_size % BLOCK:
                yield bytes(BLOCK - st.st_size % BLOCK)
            self.sent.append(Sent(f.name, st.st_size, st.st_mtime_ns, crc))


def safe_member(name: str) -> str:
    """Refuse archive names that could escape the directory being restored."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or not name:
        raise FormatError(f"refusing to restore an unsafe path from a backup: {name!r}")
    return name


def extract_tar(
    source: BinaryIO,
    dest: Path,
    *,
    tablespaces: dict[str, Path],
    owner: tuple[int, int] | None,
    expected: dict[str, tuple[int, int]] | None = None,
    skip: frozenset[str] = frozenset(),
    holes: Mapping[str, Ranges] | None = None,
    block: int = 8192,
) -> list[str]:
    """Extract a tar stream under ``dest`` (tablespace entries under their own location),
    checking each file's size and CRC-32 when ``expected`` has them, and leaving out the
    files named in ``skip`` and the blocks named in ``holes`` (a later backup has them).
    Returns the file names written."""
    names: list[str] = []
    for name, target, member, reader in file_entries(source, dest, tablespaces, owner):
        if name in skip:
            continue  # the stream moves past its data without writing it
        gaps = (holes or {}).get(name, [])
        crc = write_whole(reader, target, member, owner, gaps, block)
        if expected is not None and name in expected and expected[name] != (member.size, crc):
            raise FormatError(f"{name}: restored file does not match its recorded checksum")
        names.append(name)
    return names


def file_entries(
    source: BinaryIO, dest: Path, tablespaces: dict[str, Path], owner: tuple[int, int] | None
) -> Iterator[tuple[str, Path, tarfile.TarInfo, IO[bytes]]]:
    """The files of a backup's tar stream, each with where it goes and a reader of its data
    (read it, or leave it: the stream moves past it); directories are made on the way, and
    any other entry type is refused."""
    with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as archive:  # not 10 KB reads
        for member in archive:
            name = safe_member(member.name)
            target = destination(name, dest, tablespaces)
            if member.isdir():
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
                _own(target, owner)
                continue
            if not member.isfile():
                raise FormatError(f"unexpected entry type in a backup: {name!r}")
            reader = archive.extractfile(member)
            assert reader is not None
            yield name, target, member, reader


def write_whole(
    reader: IO[bytes],
    target: Path,
    member: tarfile.TarInfo,
    owner: tuple[int, int] | None,
    holes: Ranges,
    block: int,
) -> int:
    """One file from its archive entry, all but the blocks in ``holes`` (passed over: left
    sparse for a later backup to fill), at its exact length. Returns the entry's CRC-32."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        whole = [[0, -(-member.size // block)]] if member.size else []
        crc = copy_runs(reader, fd, runs(whole, holes), block, member.size, target)
        if holes:
            os.ftruncate(fd, member.size)
    finally:
        os.close(fd)
    os.chmod(target, member.mode & 0o7777 or 0o600)
    os.utime(target, (member.mtime, member.mtime))
    _own(target, owner)
    return crc


def copy_runs(
    reader: IO[bytes],
    fd: int,
    pieces: Iterable[tuple[int, int, bool]],
    block: int,
    end: int,
    target: Path,
) -> int:
    """Copy an entry into ``fd``, read in big pieces (not a read per page): ``pieces`` (first
    block, count, write?) say, in the entry's order, where each run of blocks goes (never
    past ``end``) and which are read past without being written. Returns the CRC-32 of all
    that was read."""
    crc = 0
    pending = memoryview(b"")
    for first, number, write in pieces:
        offset = first * block
        left = min(number * block, end - offset)
        while left > 0:
            if not pending:
                data = reader.read(CHUNK)
                if not data:
                    raise FormatError(f"{target}: backup entry shorter than recorded")
                crc = zlib.crc32(data, crc)
                pending = memoryview(data)
            n = min(left, len(pending))
            if write:
                os.pwrite(fd, pending[:n], offset)
            pending, offset, left = pending[n:], offset + n, left - n
    return crc


def destination(name: str, dest: Path, tablespaces: dict[str, Path]) -> Path:
    """Where a backup entry goes: under its tablespace's location, else under ``dest``."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[0] == "pg_tblspc" and parts[1] in tablespaces:
        return tablespaces[parts[1]].joinpath(*parts[2:])
    return dest.joinpath(*parts)


def _own(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)
