"""Block-level incremental backups (``pitr backup --type incr``, docs/postgresql.md).

The parent is the newest backup of any type. A file whose size and modification time are
those the parent recorded (and not racy) is not read at all. A main-fork relation segment
the parent had is read once in big chunks to find its pages whose LSN is at or after the
parent's start (``pagemap.changed_blocks``), and only those go into the archive, as one tar
entry holding the pages one after the other; every other file goes whole. The entries are
made as the compressor reads them, in parallel partitions, through the same upload pipeline
as a full (nothing is staged). The page map — for each file sent page by page, its blocks and
the CRC-32 of its entry; the files sent whole — is published as one more object of the backup.

Why the page LSN is enough: ``pg_backup_start`` checkpoints, so every change made before it
is on disk with its LSN; every change after it is replayed from WAL, with a full-page image
first. Hint-bit-only changes leave the LSN alone and need not be carried (PostgreSQL's own
incremental backups leave them too).
"""

from __future__ import annotations

import json
import os
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pitr.catalog import Catalog
from pitr.catalog.model import FORMAT, Backup
from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.files import BLOCK, CHUNK, DataFile, Sent, TarStream, partition
from pitr.engines.postgresql.pagemap import Ranges, changed_blocks, is_relation, to_ranges
from pitr.errors import PreconditionFailed
from pitr.storage.transfer import Compression, StoredObject, upload

#: How much of a relation file one read takes while its page LSNs are scanned
SCAN = 4 << 20


@dataclass(frozen=True)
class Paged:
    """A file sent page by page: its size and time stamp when scanned, the blocks sent and
    the CRC-32 of those pages as they went into the archive."""

    name: str
    size: int
    mtime_ns: int
    blocks: Ranges
    crc32: int


class IncrementalStream(TarStream):
    """A tar stream like ``TarStream``'s, except that the relation files the parent had are
    scanned and only their changed pages go in (see ``pagemap.changed_blocks``)."""

    def __init__(
        self, files: list[DataFile], since: int, block: int, old_sizes: Mapping[str, int]
    ) -> None:
        self.paged: list[Paged] = []
        self._since, self._block, self._old = since, block, old_sizes
        super().__init__(files)

    def _entry(self, f: DataFile) -> Iterator[bytes]:
        if f.is_dir or f.name not in self._old or not is_relation(f.name):
            yield from super()._entry(f)
            return
        try:
            fh = f.source.open("rb")
        except FileNotFoundError:
            return  # dropped during the backup; replay drops it again
        with fh:
            st = os.fstat(fh.fileno())
            blocks = to_ranges(self._scan(fh, f.name, st.st_size))
            info = tarfile.TarInfo(f.name)
            info.mtime, info.mode = st.st_mtime_ns // 1_000_000_000, f.mode & 0o7777
            info.size = sum(c for _, c in blocks) * self._block
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            crc = 0
            for first, number in blocks:
                fh.seek(first * self._block)
                left = number * self._block
                while left:
                    chunk = fh.read(min(CHUNK, left)) or bytes(min(CHUNK, left))  # shrank
                    crc = zlib.crc32(chunk, crc)
                    yield chunk
                    left -= len(chunk)
            if info.size % BLOCK:
                yield bytes(BLOCK - info.size % BLOCK)
            self.paged.append(Paged(f.name, st.st_size, st.st_mtime_ns, blocks, crc))

    def _scan(self, fh: Any, name: str, size: int) -> Iterator[int]:
        """The blocks to send: changed ones, those past the parent's length, and a last
        partial page (the file is being extended)."""
        block = self._block
        old_blocks = self._old[name] // block
        buffer = bytearray(SCAN)
        view = memoryview(buffer)
        at = 0
        while at < size:
            got = fh.readinto(view[: min(SCAN, size - at)])
            if not got:
                break  # shrank while read: the rest is replayed
            yield from changed_blocks(view[: got - got % block], at // block, self._since,
                                      old_blocks, block)  # fmt: skip
            if got % block:
                yield (at + got) // block  # a partial page: the file is being extended
                break
            at += got


def incremental_parent(catalog: Catalog, system: str, conn: Any, instance: str) -> Backup:
    """The newest backup of any type of this system, on the timeline the server is on now:
    after a promotion, pages written on the new timeline may carry LSNs older than a parent
    taken on the old one, so an incremental across it could miss them."""
    mine = sorted(
        (b for b in catalog.backups if b.system == system), key=lambda b: (b.end_time, b.id)
    )
    if not mine:
        raise PreconditionFailed(
            f"instance {instance}: no full backup to base an incremental on",
            hint="take a full backup first (pitr backup --type full)",
        )
    parent = mine[-1]
    row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    if int(parent.engine_meta.get("timeline", 0)) != int(row[0]):
        raise PreconditionFailed(
            f"instance {instance}: the newest backup, {parent.id}, was taken on timeline "
            f"{parent.engine_meta.get('timeline')}, the server is on timeline {row[0]}: an "
            "incremental cannot be based on it",
            hint="take a full or differential backup first (pitr backup --type full)",
        )
    return parent


def upload_increment(
    store: CatalogStore,
    backup_id: str,
    files: list[DataFile],
    *,
    since: int,
    block: int,
    old_sizes: Mapping[str, int],
    compression: Compression,
    partitions: int,
    last: list[DataFile] | None = None,
) -> tuple[list[StoredObject], list[Sent], list[Paged]]:
    """The changed files and pages as compressed tar partitions, uploaded in parallel, then
    ``last`` in one more partition after all of them (a standby's pg_control, see standby.py),
    then the page map: the objects (page map last), what went whole, what went page by page."""
    groups = partition(files, partitions)
    prefix = store.layout.backup_dir(backup_id)
    suffix = compression.suffix

    def one(n: int) -> tuple[StoredObject, IncrementalStream]:
        stream = IncrementalStream(groups[n], since, block, old_sizes)
        return upload(store.storage, f"{prefix}data-{n}.tar{suffix}", stream, compression), stream

    with ThreadPoolExecutor(len(groups), thread_name_prefix="backup") as pool:
        done = list(pool.map(one, range(len(groups))))
    if last:
        groups.append(last)
        done.append(one(len(groups) - 1))
    sent = [s for _, stream in done for s in stream.sent]
    paged = [p for _, stream in done for p in stream.paged]
    doc = page_map_document(sent, paged, since, block)
    body = BytesIO(json.dumps(doc, separators=(",", ":")).encode())
    page_map = upload(store.storage, f"{prefix}pagemap.json{suffix}", body, compression)
    return [obj for obj, _ in done] + [page_map], sent, paged


def page_map_document(
    sent: list[Sent], paged: list[Paged], since: int, block: int
) -> dict[str, Any]:
    """The page map object's JSON (docs/catalog-format.md, "Page maps")."""
    return {
        "format": FORMAT,
        "kind": "page-map",
        "block_size": block,
        "since": since,
        "whole": sorted(s.name for s in sent),
        "files": {
            p.name: {"size": p.size, "blocks": p.blocks, "crc32": p.crc32}
            for p in sorted(paged, key=lambda p: p.name)
        },
    }


def records_of(
    parent_records: Mapping[str, list[Any]],
    present: set[str],
    sent: list[Sent],
    paged: list[Paged],
) -> dict[str, list[Any]]:
    """The incremental's file records ([size, mtime_ns, crc32] by name, as a full's): the
    parent's for the files not read, ours for the others (no CRC-32 for a file sent by pages:
    it is scanned again whenever its time stamp cannot be trusted)."""
    records = {name: values for name, values in parent_records.items() if name in present}
    records.update((s.name, [s.size, s.mtime_ns, s.crc32]) for s in sent)
    records.update((p.name, [p.size, p.mtime_ns, None]) for p in paged)
    return records
