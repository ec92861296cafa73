"""The catalog in the repository: read it (few requests, whatever its size) and publish to it.

Publication order makes every object's presence meaningful: a backup's data objects first,
its manifest last (create-if-absent); a log's data object first, its index document last.
A reader therefore never sees a half-written backup or log as complete.
"""

from __future__ import annotations

import copy
import gc
import io
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from pitr import crypt
from pitr.catalog import Catalog, openlogs
from pitr.catalog.documents import WORKERS, parallel, read_document, write_document
from pitr.catalog.layout import INDEX_SUFFIX, Layout
from pitr.catalog.model import (
    FORMAT,
    Backup,
    LogSegment,
    SegmentIndex,
    TimelineHistory,
    Transaction,
    check_format,
)
from pitr.catalog.segments import SegmentRun, columns_of, concat, to_row
from pitr.catalog.summary import page_refs, read_page, tail_documents
from pitr.config.settings import InstanceSettings, Settings
from pitr.domain.streams import Readable
from pitr.errors import FormatError, ObjectExists, ObjectNotFound, RepositoryError, UsageError
from pitr.storage.base import ObjectInfo, PutResult, Storage
from pitr.storage.transfer import StoredObject

log = logging.getLogger("pitr.catalog")


@dataclass(frozen=True)
class Listing:
    """What one listing of ``backups/`` shows: manifests, and objects of unfinished backups."""

    manifests: dict[str, str]  # backup id -> manifest key
    orphans: dict[str, list[str]]  # backup id without manifest -> its object keys


class CatalogStore:
    """One instance's catalog in one repository."""

    def __init__(self, storage: Storage, instance: str, engine: str) -> None:
        self.storage = storage
        self.layout = Layout(instance)
        self.instance = instance
        self.engine = engine

    # -- reading ------------------------------------------------------------------------

    def load(self) -> Catalog:
        """Backups, log streams and histories, read at the same time: their requests wait on
        the network (an error is raised as if they had been read one after the other)."""
        reader = copy.copy(self)  # the same store, within one connection pool's worth
        reader.storage = _Bounded(self.storage, WORKERS)
        with _gc_paused(), ThreadPoolExecutor(3, thread_name_prefix="catalog-load") as pool:
            backups = pool.submit(reader.load_backups)
            streams = pool.submit(reader.load_streams)
            histories = pool.submit(reader.load_histories)
            return Catalog(
                instance=self.instance,
                engine=self.engine,
                backups=backups.result(),
                streams=streams.result(),
                histories=histories.result(),
            )

    def load_current(self) -> Catalog:
        """``load``, each stream's open log ``archive --follow`` ships counted as its last
        (``openlogs.with_open``), as ``plan`` counts it: what is recoverable now."""
        return openlogs.with_open(self.storage, self.layout, self.load())

    def list_backups(self) -> Listing:
        manifests: dict[str, str] = {}
        objects: dict[str, list[str]] = {}
        for info in self.storage.list(self.layout.backups):
            backup_id = self.layout.backup_id_of(info.key)
            if backup_id is None:
                continue
            if info.key == self.layout.manifest(backup_id):
                manifests[backup_id] = info.key
            else:
                objects.setdefault(backup_id, []).append(info.key)
        orphans = {b: keys for b, keys in objects.items() if b not in manifests}
        return Listing(manifests, orphans)

    def load_backups(self) -> tuple[Backup, ...]:
        """Every complete backup: the summary, checked against the manifests listed."""
        with ThreadPoolExecutor(1, thread_name_prefix="catalog-summary") as pool:
            summary = pool.submit(self._read_backups_summary)  # while listing
            listing = self.list_backups()
            known = {b.id: b for b in summary.result()}
        unknown = [key for bid, key in listing.manifests.items() if bid not in known]
        for backup in parallel(self.read_manifest, unknown):
            known[backup.id] = backup
        backups = [known[bid] for bid in listing.manifests]
        return tuple(sorted(backups, key=lambda b: (b.end_time, b.id)))

    def read_manifest(self, key: str) -> Backup:
        return Backup.from_document(read_document(self.storage, key), key)

    def _read_backups_summary(self) -> list[Backup]:
        key = self.layout.backups_summary
        try:
            doc = check_format(read_document(self.storage, key), key, "backups-summary")
        except ObjectNotFound:
            return []
        return [Backup.from_document(b, key) for b in doc.get("backups", [])]

    def write_backups_summary(self, backups: Sequence[Backup]) -> None:
        doc = {
            "format": FORMAT,
            "kind": "backups-summary",
            "backups": [b.to_dict() for b in backups],
        }
        write_document(self.storage, self.layout.backups_summary, doc)

    def load_streams(self) -> dict[str, SegmentRun]:
        """Pages first, then each stream's tail of newer index documents."""
        with _gc_paused():
            return self._load_streams()

    def _load_streams(self) -> dict[str, SegmentRun]:
        with ThreadPoolExecutor(1, thread_name_prefix="catalog-streams") as pool:
            prefixes = pool.submit(self.storage.list_prefixes, self.layout.logs)
            refs = page_refs(self.storage, self.layout)
            streams = {
                p.removeprefix(self.layout.logs).rstrip("/") for p in prefixes.result()
            } | set(refs)
        all_refs = [ref for stream in refs.values() for ref in stream]
        # Pages and tails at the same time: a tail starts after its stream's pages' names.
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="catalog") as pool:
            pages = [pool.submit(read_page, self.storage, ref) for ref in all_refs]
            tail_reads = [
                pool.submit(tail_documents, self.storage, self.layout, s, refs.get(s, []))
                for s in sorted(streams)
            ]
            columns_by_page = {
                ref.key: page.result() for ref, page in zip(all_refs, pages, strict=True)
            }
            tails = {s: t.result() for s, t in zip(sorted(streams), tail_reads, strict=True)}
        result = {}
        for stream in sorted(streams):
            parts = [columns_by_page[ref.key] for ref in refs.get(stream, [])]
            if tails[stream]:
                parts.append(columns_of(to_row(doc.segment) for doc in tails[stream]))
            if parts:
                result[stream] = SegmentRun(stream, concat(parts), self.layout.stream_dir(stream))
        return result

    def load_histories(self) -> tuple[TimelineHistory, ...]:
        keys = [
            i.key for i in self.storage.list(self.layout.histories) if i.key.endswith(INDEX_SUFFIX)
        ]
        docs = parallel(
            lambda k: TimelineHistory.from_document(read_document(self.storage, k), k), keys
        )
        return tuple(sorted(docs, key=lambda h: h.timeline))

    def segment_index(self, stream: str, name: str) -> SegmentIndex | None:
        key = self.layout.log_index(stream, name)
        try:
            return SegmentIndex.from_document(read_document(self.storage, key), key)
        except ObjectNotFound:
            return None

    def transactions(
        self, segments: Iterable[LogSegment], *, contents: bool = False
    ) -> dict[str, tuple[Transaction, ...]]:
        """The transactions of each segment (by ``segment.ref``), from its index document;
        with ``contents``, their summaries even when sealed (which needs an identity)."""
        todo = list(segments)

        def read(seg: LogSegment) -> tuple[Transaction, ...]:
            key = self.layout.log_index(seg.stream, seg.name)
            if openlogs.is_open(self.layout, seg):  # an open binlog's shipped part
                return openlogs.read_index(self.storage, self.layout, seg).transactions
            index = self.segment_index(seg.stream, seg.name)
            if index is None:
                raise ObjectNotFound(key)
            if contents and index.sealed is not None:
                from pitr.catalog.sealing import open_index

                index = open_index(index, crypt.installed(), key)
            return index.transactions

        return dict(zip((s.ref for s in todo), parallel(read, todo), strict=True))

    def confirm(self, objects: Iterable[StoredObject]) -> dict[str, str]:
        """Which of ``objects`` are not in the repository as recorded, by listing the
        directories involved (at the same time) from just before their first key: key ->
        what is wrong."""
        by_dir: dict[str, dict[str, StoredObject]] = {}
        for obj in objects:
            by_dir.setdefault(obj.key.rsplit("/", 1)[0] + "/", {})[obj.key] = obj
        wrong: dict[str, str] = {}
        for found in parallel(self._confirm_in_directory, list(by_dir.values())):
            wrong.update(found)
        return wrong

    def _confirm_in_directory(self, wanted: dict[str, StoredObject]) -> dict[str, str]:
        first, last = min(wanted), max(wanted)
        # Every key between first and last starts with their common prefix (within the
        # directory): listing only that prefix returns the same keys, and servers that filter
        # by prefix (S3, Swift) have less to look at.
        prefix = _common_prefix(first, last)
        seen: dict[str, int] = {}
        for info in self.storage.list(prefix, start_after=_just_before(first)):
            if info.key > last:
                break
            seen[info.key] = info.size
        wrong: dict[str, str] = {}
        for key, obj in wanted.items():
            if key not in seen:
                wrong[key] = "missing"
            elif seen[key] != obj.size:
                wrong[key] = f"size {seen[key]} instead of {obj.size}"
        return wrong

    # -- publishing -----------------------------------------------------------------------

    def publish_backup(self, backup: Backup) -> None:
        """Write the manifest (create-if-absent: a backup id is published once), then the
        summary. Call with the instance lock held."""
        key = self.layout.manifest(backup.id)
        if crypt.encrypting():
            from pitr.catalog.sealing import seal_backup

            backup = seal_backup(backup, crypt.installed())
        doc = backup.to_dict()
        try:
            write_document(self.storage, key, doc, if_absent=True)
        except ObjectExists:
            raise RepositoryError(f"backup {backup.id} is already published ({key})") from None
        self.write_backups_summary([*self.load_backups()])

    def publish_segment(self, index: SegmentIndex) -> bool:
        """Publish a log's index document after its data object. False when the same log was
        already published; ``RepositoryError`` when a different one was."""
        seg = index.segment
        key = self.layout.log_index(seg.stream, seg.name)
        doc = index.to_dict()
        if crypt.encrypting() and any(t.summary for t in index.transactions):  # (wal-push: none)
            from pitr.catalog.sealing import seal_index

            doc = seal_index(index, crypt.installed()).to_dict()
        try:
            write_document(self.storage, key, doc, if_absent=True)
            return True
        except ObjectExists:
            existing = self.segment_index(seg.stream, seg.name)
            if existing is not None and same_content(existing.segment.object, seg.object):
                return False
            raise RepositoryError(
                f"{seg.name} is already archived with different content ({key})",
                hint="two servers may be archiving into the same repository and instance",
            ) from None

    def publish_history(self, history: TimelineHistory, name: str) -> None:
        write_document(self.storage, self.layout.history_index(name), history.to_dict())


class _Bounded(Storage):
    """``storage`` serving at most ``slots`` requests at a time, however many threads ask:
    parts of the catalog read at once (each in parallel) stay within one connection pool."""

    def __init__(self, storage: Storage, slots: int) -> None:
        self.inner = storage
        self.supports_create_if_absent = storage.supports_create_if_absent
        self._slots = threading.BoundedSemaphore(slots)

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        with self._slots:
            return self.inner.put(key, source, if_absent=if_absent)

    def open(self, key: str) -> io.RawIOBase:
        with self._slots:
            return self.inner.open(key)

    def get_bytes(self, key: str) -> bytes:
        with self._slots:  # the whole transfer, not only its start
            return self.inner.get_bytes(key)

    def stat(self, key: str) -> ObjectInfo:
        with self._slots:
            return self.inner.stat(key)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        items = self.inner.list(prefix, start_after)
        while True:
            with self._slots:  # a page is requested within some of these steps
                info = next(items, None)
            if info is None:
                return
            yield info

    def list_prefixes(self, prefix: str) -> tuple[str, ...]:
        with self._slots:
            return self.inner.list_prefixes(prefix)

    def delete(self, key: str) -> None:
        with self._slots:
            self.inner.delete(key)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while summary pages are parsed: their millions of
    small lists cannot form cycles, yet would each trigger collections walking them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def same_content(a: StoredObject, b: StoredObject) -> bool:
    if a.raw_sha256 and b.raw_sha256:
        return a.raw_sha256 == b.raw_sha256 and a.raw_size == b.raw_size
    return a.sha256 == b.sha256 and a.size == b.size


def _common_prefix(a: str, b: str) -> str:
    """The longest string both ``a`` and ``b`` start with (character by character)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _just_before(key: str) -> str:
    """A string sorting just before ``key``: listing after it starts at ``key``."""
    last = key[-1]
    if last == "\x00":
        return key[:-1]
    return key[:-1] + chr(ord(last) - 1) + "\U0010ffff"


def open_catalog(settings: Settings, instance: InstanceSettings) -> CatalogStore:
    """The catalog store of ``instance`` in the configured repository; the repository's keys
    become this process's (encryption)."""
    from pitr.crypt.keyring import keyring_for
    from pitr.storage import open_storage

    crypt.install(keyring_for(settings.repository, settings.source))
    return CatalogStore(open_storage(settings.repository), instance.name, instance.engine)


def check_backup_id(catalog: Catalog, backup_id: str) -> Backup:
    """The backup called ``backup_id``. Absent, it is bad input (``UsageError``, exit 2) unless
    a differential names it as its parent: then the catalog is damaged (``FormatError``)."""
    backup = catalog.backup(backup_id)
    if backup is not None:
        return backup
    children = [b.id for b in catalog.backups if b.parent == backup_id]
    if children:
        raise FormatError(
            f"backup {backup_id!r}, the parent of {', '.join(children)}, is not in the catalog"
        )
    known = ", ".join(b.id for b in catalog.backups[-5:]) or "none"
    raise UsageError(
        f"unknown backup {backup_id!r} (newest: {known})",
        hint="'pitr list' shows every backup id",
    )
