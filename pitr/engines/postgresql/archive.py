"""WAL in and out of the repository: ``wal-push`` (archive_command), ``wal-fetch``
(restore_command) and ``archive`` (push whatever is ready, in parallel).

A segment is published as its compressed data object first, then its index document
(create-if-absent): the document's presence means the segment is archived. Pushing a segment
that is already archived succeeds when the content is the same and is refused (exit 3) when it
is not — a different server writing into the same repository and instance.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pitr import crypt
from pitr.catalog.documents import read_document
from pitr.catalog.model import LogSegment, SegmentIndex, TimelineHistory
from pitr.catalog.segments import SUFFIX
from pitr.catalog.store import CatalogStore
from pitr.catalog.summary import compact
from pitr.domain.positions import WalName, format_lsn, parse_wal_name
from pitr.domain.timeutil import format_time, utcnow
from pitr.engines.postgresql.prefetch import REQUESTED
from pitr.engines.postgresql.versions import (
    datadir_major,
    known,
    require_tool_major,
    unknown_version,
)
from pitr.engines.postgresql.waldump import WalIndex, index_segment
from pitr.engines.postgresql.walfile import (
    PageHeader,
    check_segment,
    parse_history,
    read_long_header,
)
from pitr.engines.proc import find_tool
from pitr.errors import (
    FormatError,
    ObjectExists,
    ObjectNotFound,
    PitrError,
    PreconditionFailed,
    RepositoryError,
    UsageError,
)
from pitr.storage.transfer import Compression, StoredObject, fetch, read_back, upload

log = logging.getLogger("pitr.postgresql")
HEADER_BYTES = 64


@dataclass(frozen=True)
class PushContext:
    store: CatalogStore
    compression: Compression
    bindir: str | None = None


def wal_push(ctx: PushContext, path: Path) -> bool:
    """Archive one file from ``pg_wal``; False when it was already archived (same content)."""
    wal = parse_wal_name(path.name)
    if wal is None:
        raise UsageError(f"{path}: not a WAL segment, .partial, .history or .backup file name")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if wal.kind == "segment":
        return _push_segment(ctx, path, wal)
    if wal.kind == "history":
        return _push_history(ctx, path, wal)
    # .partial and .backup files are kept (for people and for completeness) but PostgreSQL
    # never asks restore_command for them during replay: no index document.
    key = ctx.store.layout.log_object(wal.stream, wal.name, ctx.compression.suffix)
    return _upload_once(ctx, path, key, wal.name) is not None


def _upload_once(ctx: PushContext, path: Path, key: str, name: str) -> StoredObject | None:
    """Upload ``path`` to ``key`` unless an object is already there (create-if-absent, so
    two pushers never overwrite each other). None when one is there with the same content;
    ``RepositoryError`` when its content differs."""
    try:
        with path.open("rb") as fh:
            return upload(
                ctx.store.storage, key, fh, ctx.compression, if_absent=True, hash_raw=True
            )
    except ObjectExists:
        there = _read_back(ctx, key)
        if there is None:
            return _replace(ctx, path, key)
        if there.raw_sha256 == _sha256(path):
            log.info("%s is already archived with the same content", name)
            return None
        raise _different(name, key) from None


def _different(name: str, key: str) -> RepositoryError:
    return RepositoryError(
        f"{name} is already archived with different content ({key}); refusing to overwrite",
        hint="two clusters may be archiving into the same repository and instance",
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _push_segment(ctx: PushContext, path: Path, wal: WalName) -> bool:
    store = ctx.store
    header = _header(path, wal)
    check_segment(header, wal)
    now = utcnow()
    key = store.layout.log_object(wal.stream, wal.name, ctx.compression.suffix)
    waldump = find_tool("pg_waldump", ctx.bindir)
    require_tool_major(waldump, header.version, f"WAL segment {wal.name}", ctx.bindir)
    # pg_waldump and the raw sha256 run beside the compressor (each releases the GIL).
    with ThreadPoolExecutor(2, thread_name_prefix="wal-push") as pool:
        indexing = pool.submit(index_segment, path, wal.name, waldump, fallback_time=now)
        hashing = pool.submit(_sha256, path)
        try:
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                uploaded = upload(
                    store.storage, key, fh, ctx.compression, if_absent=True, size=size
                )
        except ObjectExists:
            uploaded = None
        index, raw_sha256 = indexing.result(), hashing.result()
    if uploaded is None:
        stored = _already_there(ctx, path, key, raw_sha256, wal)
        if stored is None:
            return False
    else:
        stored = replace(uploaded, raw_sha256=raw_sha256)
    segment = segment_record(wal, header, stored, index, now)
    published = store.publish_segment(SegmentIndex(segment, index.transactions))
    if not published and uploaded is not None:
        _drop_duplicate(store, wal, stored.key)
    per_id = 0x100000000 // header.segment_size
    if published and wal.seg == per_id - 1:  # every 4 GB of WAL: fold the tail into a page
        try:
            compact(store.storage, store.layout, wal.stream)
        except PitrError as exc:  # the summary is a cache: archiving has succeeded
            log.warning("could not update the catalog summary: %s", exc.message)
    return published


def segment_record(
    wal: WalName, header: PageHeader, stored: StoredObject, index: WalIndex, now: datetime
) -> LogSegment:
    """The catalog record of segment ``wal`` stored as ``stored``, indexed as ``index``
    (``archive --follow`` records its streamed partial segment the same way)."""
    start = wal.start_lsn(header.segment_size)
    times = [t.time for t in index.transactions if t.time is not None]
    xids = [t.xid for t in index.transactions if t.xid is not None]
    keys = [t.key for t in index.transactions] + [p.key for p in index.restore_points]
    return LogSegment(
        name=wal.name,
        stream=wal.stream,
        system=str(header.system_id),
        start=format_lsn(start),
        end=format_lsn(start + header.segment_size),
        start_key=start,
        end_key=start + header.segment_size,
        object=stored,
        commits=len(index.transactions),
        last_key=max(keys) if keys else None,
        first_commit=times[0] if times else None,
        last_commit=times[-1] if times else None,
        min_commit=min(times) if times else None,
        max_commit=max(times) if times else None,
        xid_min=min(xids) if xids else None,
        xid_max=max(xids) if xids else None,
        restore_points=index.restore_points,
        extra={
            "archived_at": format_time(now),
            "wal_segment_size": header.segment_size,
            "postgresql": header.version,
        },
        server_major=str(header.version),
    )


def _header(path: Path, wal: WalName) -> PageHeader:
    """The segment's first page header. WAL pitr cannot read is refused (exit 3) naming the
    version when the data directory holding it (``pg_wal``'s parent) says which it is."""
    with path.open("rb") as fh:
        head = fh.read(HEADER_BYTES)
    try:
        return read_long_header(head, wal.name)
    except FormatError:
        major = datadir_major(path.absolute().parent.parent)
        if major is not None and not known(major):
            raise unknown_version(f"WAL segment {wal.name}", major, wal=True) from None
        raise


def _drop_duplicate(store: CatalogStore, wal: WalName, key: str) -> None:
    """The segment was archived before under another name (e.g. before encryption was turned
    on): the object just uploaded to ``key`` is not the one its index document names."""
    existing = store.segment_index(wal.stream, wal.name)
    if existing is not None and existing.segment.object.key != key:
        store.storage.delete(key)


def _already_there(
    ctx: PushContext, path: Path, key: str, local_sha: str, wal: WalName
) -> StoredObject | None:
    """The segment's data object was there before this push: None when the segment is
    archived with the same content; the object when a push was interrupted before its index
    document (same content: publish the index now); ``RepositoryError`` when it differs."""
    existing = ctx.store.segment_index(wal.stream, wal.name)
    if existing is not None:
        if existing.segment.object.raw_sha256 == local_sha:
            log.info("%s is already archived with the same content", wal.name)
            return None
        raise _different(wal.name, key)
    there = _read_back(ctx, key)
    if there is None:
        return replace(_replace(ctx, path, key), raw_sha256=local_sha)
    if there.raw_sha256 != local_sha:
        raise _different(wal.name, key)
    return there


def _read_back(ctx: PushContext, key: str) -> StoredObject | None:
    """The object at ``key`` described from its contents; None when it is encrypted and this
    host holds no identity to read it (docs/encryption.md: writers hold only recipients)."""
    if ctx.compression.encrypt and not crypt.can_decrypt():
        return None
    return read_back(ctx.store.storage, key, ctx.compression.codec)


def _replace(ctx: PushContext, path: Path, key: str) -> StoredObject:
    """Overwrite what an interrupted push left at ``key`` (no index document names it), when
    it cannot be read back here to compare."""
    log.warning("%s: left by an interrupted push and unreadable here (encrypted): replaced", key)
    with path.open("rb") as fh:
        return upload(ctx.store.storage, key, fh, ctx.compression, hash_raw=True)


def _push_history(ctx: PushContext, path: Path, wal: WalName) -> bool:
    store = ctx.store
    text = path.read_text()
    entries = parse_history(text, wal.name)
    switches = tuple((e.parent, e.switch_lsn, e.switch_text) for e in entries)
    codec = Compression("none", encrypt=ctx.compression.encrypt)
    key = store.layout.history_object(wal.name, codec.suffix)
    if _history_there(store, wal.name, key, text, switches, codec.encrypt):
        return False
    with path.open("rb") as fh:
        stored = upload(store.storage, key, fh, codec, hash_raw=True)
    history = TimelineHistory(
        timeline=wal.timeline, switches=switches, object=stored, created=utcnow()
    )
    store.publish_history(history, wal.name)
    return True


def _history_there(
    store: CatalogStore,
    name: str,
    key: str,
    text: str,
    switches: tuple[tuple[int, int, str], ...],
    encrypted: bool,
) -> bool:
    """Whether history ``name`` is archived already (same switches: ``RepositoryError`` when
    different). An encrypted one is compared through its index document, readable here."""
    try:
        doc = read_document(store.storage, store.layout.history_index(name))
        same = TimelineHistory.from_document(doc, name).switches == switches
    except ObjectNotFound:
        if encrypted:
            return False
        try:
            same = store.storage.get_bytes(key).decode(errors="replace") == text
        except ObjectNotFound:
            return False
    if not same:
        raise RepositoryError(f"{name} is already archived with different content")
    return True


def object_keys(store: CatalogStore, name: str) -> list[tuple[str, str]]:
    """Where ``name`` may be stored, with its codec: the configured encoding first (zstd
    before plain), then the others (a repository may hold objects from before encryption)."""
    wal = parse_wal_name(name)
    if wal is None:
        raise UsageError(f"{name}: not a WAL file name")
    first = "+age" if crypt.encrypting() else ""
    order = [first, "" if first else "+age"]
    if wal.kind == "history":
        return [(store.layout.history_object(name, SUFFIX[f"none{e}"]), f"none{e}") for e in order]
    return [
        (store.layout.log_object(wal.stream, name, SUFFIX[codec]), codec)
        for e in order
        for codec in (f"zstd{e}", f"none{e}")
    ]


def wal_fetch(store: CatalogStore, name: str, dest: Path, spool: Path | None = None) -> bool:
    """Put WAL file ``name`` at ``dest``: from the prefetch spool if the recovery that runs
    this restore_command put it there, else from the repository. False when it is not there."""
    if spool is not None:
        note_request(spool, name)
        staged = spool / name
        if staged.is_file():
            shutil.move(staged, dest)  # a rename, unless pg_wal is elsewhere (--waldir)
            return True
    for key, compression in object_keys(store, name):
        if _fetch_object(store, key, compression, name, dest):
            return True
    return _fetch_open(store, name, dest)


def _fetch_open(store: CatalogStore, name: str, dest: Path) -> bool:
    """The segment ``archive --follow`` is streaming, as last shipped (docs/postgresql.md,
    "Streaming WAL"): asked for only once no complete segment of that name is archived."""
    wal = parse_wal_name(name)
    if wal is None or wal.kind != "segment":
        return False
    from pitr.catalog import openlogs

    key = openlogs.index_key(store.layout, wal.stream, name)
    for _attempt in range(3):  # a longer copy may replace the one named meanwhile
        try:
            obj = SegmentIndex.from_document(read_document(store.storage, key), key).segment.object
        except ObjectNotFound:
            return False
        if _fetch_object(store, obj.key, obj.codec, name, dest):
            log.info("%s: the partial segment streamed by archive --follow", name)
            return True
    return False


def _fetch_object(store: CatalogStore, key: str, compression: str, name: str, dest: Path) -> bool:
    """Object ``key`` decoded into ``dest`` (whole, or nothing there); False when absent."""
    tmp = dest.with_name(f".{dest.name}.pitr-tmp")
    try:
        with tmp.open("wb") as out:
            fetch(store.storage, key, compression, out)
            out.flush()
            os.fsync(out.fileno())
    except ObjectNotFound:
        tmp.unlink(missing_ok=True)
        return False
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # never a partial file where PostgreSQL looks
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise PreconditionFailed(
                f"no space left in {dest.parent} for WAL file {name}; nothing was written",
                hint="free space there: PostgreSQL asks for the file again",
            ) from None
        raise
    os.replace(tmp, dest)
    return True


def note_request(spool: Path, name: str) -> None:
    """Tell the prefetcher of a running recovery which file replay wants now: what lies
    before it in the plan is no longer needed (see ``pitr.engines.postgresql.prefetch``)."""
    if not spool.is_dir():
        return  # started by hand later: no prefetcher
    tmp = spool / f"{REQUESTED}.{os.getpid()}"
    try:
        tmp.write_text(name)
        os.replace(tmp, spool / REQUESTED)
    except OSError as exc:  # only an optimisation: never fail a restore_command for it
        log.debug("could not note the request for %s in %s: %s", name, spool, exc)
        tmp.unlink(missing_ok=True)


def ready_files(datadir: Path) -> list[Path]:
    """WAL files PostgreSQL has marked ready for archiving, history files first."""
    status = datadir / "pg_wal" / "archive_status"
    names = sorted(p.name.removesuffix(".ready") for p in status.glob("*.ready"))
    names.sort(key=lambda n: (not n.endswith(".history"), n))
    return [datadir / "pg_wal" / n for n in names]


def archive_ready(
    ctx: PushContext, datadir: Path, *, workers: int, on_done: Callable[[str], None]
) -> tuple[int, int]:
    """Push every ready file (several at once) and mark it done as PostgreSQL's archiver
    would. Returns (pushed, already archived)."""
    from concurrent.futures import ThreadPoolExecutor

    files = ready_files(datadir)

    def one(path: Path) -> bool:
        pushed = wal_push(ctx, path)
        status = datadir / "pg_wal" / "archive_status"
        os.replace(status / f"{path.name}.ready", status / f"{path.name}.done")
        on_done(path.name)
        return pushed

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="wal-push") as pool:
        results = list(pool.map(one, files))
    return sum(results), len(results) - sum(results)
