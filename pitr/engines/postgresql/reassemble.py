"""Restoring a chain with block-level incrementals, streaming (docs/postgresql.md).

Before anything is written, the page maps of the incrementals are read (each verified
against its checksum) and ``pagemap.resolve`` proves that every block of every file of the
newest link comes from exactly one link; a chain that does not add up is refused. Then the
links are written oldest first, straight from the repository: a file is written whole only by
the newest link that has it whole (the full and the differential leave the others out, as they
leave out a file dropped since), and each newer link's pages go in at their offsets, the file
cut to the length that link recorded. No intermediate copy is ever made. At the end every file
has the length the newest link recorded.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from pitr.catalog.model import Backup
from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.files import copy_runs, destination, file_entries, write_whole
from pitr.engines.postgresql.pagemap import Link, Source, link_of_document, resolve, runs
from pitr.errors import FormatError, PitrError, VerificationFailed
from pitr.storage.transfer import StoredObject, VerifiedReader

#: ``restore._extract``: one full or differential into the directory, leaving out the files
#: named and the blocks of ``Source.skip``
Extract = Callable[[Backup, frozenset[str], Source], None]


def page_map_of(backup: Backup) -> StoredObject:
    key = backup.engine_meta.get("page_map")
    found = next((o for o in backup.objects if o.key == key), None)
    if found is None:
        raise FormatError(f"backup {backup.id}: its page map ({key}) is not among its objects")
    return found


def _read_page_map(store: CatalogStore, backup: Backup) -> dict[str, Any]:
    with VerifiedReader(store.storage, page_map_of(backup)) as reader:
        body = reader.read()
        reader.finish()
    try:
        doc = json.loads(body)
    except ValueError:
        raise FormatError(f"backup {backup.id}: its page map is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "page-map":
        raise FormatError(f"backup {backup.id}: its page map is not a page-map document")
    return doc


def _sizes(backup: Backup) -> dict[str, int]:
    return {name: int(v[0]) for name, v in backup.engine_meta.get("files", {}).items()}


def links_of(chain: list[Backup], maps: Mapping[str, dict[str, Any]]) -> list[Link]:
    """Each backup of ``chain`` as a ``Link``: a full has every file whole; a differential the
    files whose record differs from its full's; an incremental what its page map says."""
    full_records = chain[0].engine_meta.get("files", {})
    links = []
    for b in chain:
        records = b.engine_meta.get("files", {})
        if b.type == "incr":
            links.append(link_of_document(b.id, _sizes(b), maps[b.id]))
        elif b.type == "diff":
            whole = frozenset(n for n, r in records.items() if full_records.get(n) != r)
            links.append(Link(b.id, _sizes(b), whole))
        else:
            links.append(Link(b.id, _sizes(b), frozenset(records)))
    return links


def reassemble(
    store: CatalogStore,
    chain: list[Backup],
    dest: Path,
    tablespaces: dict[str, Path],
    owner: tuple[int, int] | None,
    extract: Extract,
) -> None:
    """Write ``chain`` (full first) into ``dest``, every block from the one link it comes from."""
    incrs = [b for b in chain if b.type == "incr"]
    with ThreadPoolExecutor(4, thread_name_prefix="pagemap") as pool:
        docs = list(pool.map(lambda b: _read_page_map(store, b), incrs))
    maps = {b.id: doc for b, doc in zip(incrs, docs, strict=True)}
    block = int(chain[-1].engine_meta.get("block_size", 8192))
    sources = resolve(links_of(chain, maps), block)  # refused here: nothing written yet
    for backup, source in zip(chain, sources, strict=True):
        if backup.type != "incr":
            extract(backup, frozenset(backup.engine_meta.get("files", {})) - source.whole, source)
        else:
            _apply(store, backup, source, maps[backup.id], dest, tablespaces, owner)
    _check_lengths(chain[-1], dest, tablespaces)


def _apply(
    store: CatalogStore,
    backup: Backup,
    source: Source,
    doc: dict[str, Any],
    dest: Path,
    tablespaces: dict[str, Path],
    owner: tuple[int, int] | None,
) -> None:
    """One incremental's data objects, in parallel: whole files and pages where ``source``
    says, the rest of the stream skipped."""
    records = backup.engine_meta.get("files", {})
    block = int(doc.get("block_size", 8192))
    crcs = {name: int(v["crc32"]) for name, v in doc["files"].items()}
    data = [o for o in backup.objects if o.key != backup.engine_meta.get("page_map")]

    def one(obj: StoredObject) -> None:
        with VerifiedReader(store.storage, obj) as reader:
            try:
                _apply_stream(reader, source, records, crcs, dest, tablespaces, owner, block)  # type: ignore[arg-type]
            except VerificationFailed:
                raise
            except (PitrError, tarfile.TarError, EOFError):
                reader.finish()  # a damaged object is the error to report
                raise

    with ThreadPoolExecutor(max(1, len(data)), thread_name_prefix="restore") as pool:
        for future in [pool.submit(one, obj) for obj in data]:
            future.result()


def _apply_stream(
    stream: BinaryIO,
    source: Source,
    records: Mapping[str, list[Any]],
    crcs: Mapping[str, int],
    dest: Path,
    tablespaces: dict[str, Path],
    owner: tuple[int, int] | None,
    block: int,
) -> None:
    for name, target, member, reader in file_entries(stream, dest, tablespaces, owner):
        skip = source.skip.get(name, [])
        if name in source.whole:
            crc = write_whole(reader, target, member, owner, skip, block)
            expected = records.get(name, [None, None, None])[2]
            if (member.size, crc) != (records.get(name, [None])[0], expected):
                raise FormatError(f"{name}: restored file does not match its recorded checksum")
        elif name in source.pages:
            ranges, length = source.pages[name], source.lengths[name]
            _write_pages(reader, target, ranges, skip, length, crcs[name], block)


def _write_pages(
    reader: Any,
    target: Path,
    ranges: list[list[int]],
    skip: list[list[int]],
    length: int,
    want: int,
    block: int,
) -> None:
    """The pages of one entry at their offsets but those in ``skip`` (read past: a newer
    link's copy stays), then the file cut to ``length``."""
    if not target.is_file():
        raise FormatError(f"{target}: pages of an incremental for a file no older link wrote")
    fd = os.open(target, os.O_WRONLY)
    try:
        crc = copy_runs(reader, fd, runs(ranges, skip), block, 1 << 62, target)
        os.ftruncate(fd, length)
    finally:
        os.close(fd)
    if crc != want:
        raise FormatError(f"{target}: restored pages do not match their recorded checksum")


def _check_lengths(last: Backup, dest: Path, tablespaces: dict[str, Path]) -> None:
    """Every file of the newest link is there, with the length it recorded."""
    for name, size in _sizes(last).items():
        path = destination(name, dest, tablespaces)
        try:
            got = path.stat().st_size
        except FileNotFoundError:
            raise FormatError(f"{name}: missing after the chain was restored") from None
        if got != size:
            raise FormatError(f"{name}: {got} bytes after the chain was restored, not {size}")
