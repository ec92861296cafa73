"""``file://`` repositories: objects are files under a root directory.

A write goes to a hidden temporary name in the destination directory, is fsync'ed, then renamed
(or hard-linked, for create-if-absent) into place, and the directory is fsync'ed: a reader never
sees a partial object, and a writer killed mid-way leaves only a temporary file that listings
ignore.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import io
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from pitr.domain.streams import Readable
from pitr.errors import ObjectExists, ObjectNotFound, RepositoryError, StorageUnavailable
from pitr.storage.base import (
    MiB,
    ObjectInfo,
    PutResult,
    Storage,
    validate_key,
    validate_prefix,
)

TMP_MARK = ".pitr-tmp-"
CHUNK = 4 * MiB


class LocalStorage(Storage):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self._owner: tuple[int, int] | None = None
        self._owner_known = False

    def owner(self) -> tuple[int, int] | None:
        """Who new directories and objects should belong to. pitr runs as root (backups) and
        as the database's OS user (archive_command) against the same repository: when root
        writes into a repository owned by someone else, what it creates goes to that owner,
        so the other user can still write, rename and delete there."""
        if not self._owner_known:
            self._owner_known = True
            if os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    st = self.root.stat()
                    if st.st_uid != 0:
                        self._owner = (st.st_uid, st.st_gid)
        return self._owner

    def _makedirs(self, directory: Path) -> None:
        missing = []
        while not directory.is_dir():
            missing.append(directory)
            if directory == directory.parent:
                break
            directory = directory.parent
        owner = self.owner()
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                if owner is not None and self.root in path.parents:
                    os.chown(path, *owner)

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        path = self._path(key)
        if path.name.startswith(".") and TMP_MARK in path.name:
            raise RepositoryError(f"invalid object key {key!r}: reserved name")
        try:
            self._makedirs(path.parent)
        except OSError as exc:
            raise _os_error(exc, path) from None
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb", buffering=0) as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                os.fsync(out.fileno())
                if os.fstat(out.fileno()).st_size != size:
                    raise StorageUnavailable(f"{path}: short write")
                if (owner := self.owner()) is not None:
                    os.fchown(out.fileno(), *owner)
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(key) from None
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _os_error(exc, path) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return PutResult(key, size, digest.hexdigest())

    def open(self, key: str) -> io.RawIOBase:
        path = self._path(key)
        try:
            return open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except IsADirectoryError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise _os_error(exc, path) from None

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise _os_error(exc, path) from None
        if not _is_regular(st.st_mode):
            raise ObjectNotFound(key)
        return ObjectInfo(key, st.st_size)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Start at the deepest directory the prefix names, then filter by the prefix string.
        head, _, _ = prefix.rpartition("/")
        start = self.root / head if head else self.root
        base = f"{head}/" if head else ""
        after = start_after or ""
        for info in self._walk(start, base, after):
            if info.key.startswith(prefix) and info.key > after:
                yield info

    def _walk(self, directory: Path, base: str, after: str) -> Iterator[ObjectInfo]:
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _os_error(exc, directory) from None
        if after.startswith(base):
            rest = after[len(base) :]
        elif after < base:
            rest = ""
        else:
            return  # every key here sorts before start_after
        # Only names that can hold keys after start_after: the later ones, and one it starts
        # with (a directory holding it). A long directory listed from near its end costs one
        # read of the directory and a few stat calls, not one per entry.
        if rest:
            names = [n for n in names if n > rest or rest.startswith(n)]
        names.sort()
        # Keys sort as files "a", "a-b" and directory "a/": a directory waits in ``pending``
        # (as "a/") until no name left sorts before it. Each entry is stat'ed when reached.
        pending: list[str] = []
        for name in names:
            while pending and pending[0] < name:
                sub = heapq.heappop(pending)
                yield from self._walk(directory / sub[:-1], base + sub, after)
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # deleted since the directory was read
            except OSError as exc:
                raise _os_error(exc, Path(path)) from None
            if stat.S_ISDIR(st.st_mode):
                sub = f"{name}/"
                if sub > rest or rest.startswith(sub):
                    heapq.heappush(pending, sub)
            elif stat.S_ISREG(st.st_mode) and TMP_MARK not in name and name > rest:
                yield ObjectInfo(base + name, st.st_size)
        while pending:
            sub = heapq.heappop(pending)
            yield from self._walk(directory / sub[:-1], base + sub, after)

    def list_prefixes(self, prefix: str) -> tuple[str, ...]:
        validate_prefix(prefix)
        directory = self.root / prefix if prefix else self.root
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return ()
        except OSError as exc:
            raise _os_error(exc, directory) from None
        return tuple(
            sorted(f"{prefix}{e.name}/" for e in entries if e.is_dir(follow_symlinks=False))
        )

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, path) from None
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty by deletes, up to the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError, path: Path) -> Exception:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageUnavailable(
            f"{path}: permission denied",
            hint="the repository directory must be writable by the OS user running pitr",
        )
    if exc.errno == errno.ENOSPC:
        return StorageUnavailable(f"{path}: no space left on device")
    return RepositoryError(f"{path}: {exc.strerror or exc}")
