"""The catalog in the repository: read it (few requests, whatever its size) and publish to it.

Publication order makes every object's presence meaningful: a backup's data objects first,
its manifest last (create-if-absent); a log's data object first, its index document last.
A reader therefore never sees a half-written backup or log as complete.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pitr.catalog import Catalog
from pitr.catalog.documents import parallel, read_document, write_document
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
from pitr.catalog.segments import SegmentRun, to_row
from pitr.catalog.summary import page_refs, read_page, tail_documents
from pitr.errors import FormatError, ObjectExists, ObjectNotFound, RepositoryError
from pitr.storage.base import Storage
from pitr.transfer import StoredObject

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
        return Catalog(
            instance=self.instance,
            engine=self.engine,
            backups=self.load_backups(),
            streams=self.load_streams(),
            histories=self.load_histories(),
        )

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
        listing = self.list_backups()
        known = {b.id: b for b in self._read_backups_summary()}
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
        refs = page_refs(self.storage, self.layout)
        streams = {
            p.removeprefix(self.layout.logs).rstrip("/")
            for p in self.storage.list_prefixes(self.layout.logs)
        } | set(refs)
        all_refs = [ref for stream in refs.values() for ref in stream]
        rows_by_page = dict(
            zip(
                (r.key for r in all_refs),
                parallel(lambda ref: read_page(self.storage, ref), all_refs),
                strict=True,
            )
        )
        tails = dict(
            zip(
                sorted(streams),
                parallel(
                    lambda s: tail_documents(self.storage, self.layout, s, refs.get(s, [])),
                    sorted(streams),
                ),
                strict=True,
            )
        )
        result = {}
        for stream in sorted(streams):
            rows = [row for ref in refs.get(stream, []) for row in rows_by_page[ref.key]]
            rows += [to_row(doc.segment) for doc in tails[stream]]
            if rows:
                result[stream] = SegmentRun(stream, rows)
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

    def transactions(self, segments: Iterable[LogSegment]) -> dict[str, tuple[Transaction, ...]]:
        """The transactions of each segment (by ``segment.ref``), from its index document."""
        todo = list(segments)

        def read(seg: LogSegment) -> tuple[Transaction, ...]:
            index = self.segment_index(seg.stream, seg.name)
            if index is None:
                raise ObjectNotFound(self.layout.log_index(seg.stream, seg.name))
            return index.transactions

        return dict(zip((s.ref for s in todo), parallel(read, todo), strict=True))

    def confirm(self, objects: Iterable[StoredObject]) -> dict[str, str]:
        """Which of ``objects`` are not in the repository as recorded, by listing the
        directories involved from just before their first key: key -> what is wrong."""
        by_dir: dict[str, dict[str, StoredObject]] = {}
        for obj in objects:
            by_dir.setdefault(obj.key.rsplit("/", 1)[0] + "/", {})[obj.key] = obj
        wrong: dict[str, str] = {}
        for directory, wanted in by_dir.items():
            first, last = min(wanted), max(wanted)
            seen: dict[str, int] = {}
            for info in self.storage.list(directory, start_after=_just_before(first)):
                if info.key > last:
                    break
                seen[info.key] = info.size
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
        try:
            write_document(self.storage, key, backup.to_dict(), if_absent=True)
        except ObjectExists:
            raise RepositoryError(f"backup {backup.id} is already published ({key})") from None
        self.write_backups_summary([*self.load_backups()])

    def publish_segment(self, index: SegmentIndex) -> bool:
        """Publish a log's index document after its data object. False when the same log was
        already published; ``RepositoryError`` when a different one was."""
        seg = index.segment
        key = self.layout.log_index(seg.stream, seg.name)
        try:
            write_document(self.storage, key, index.to_dict(), if_absent=True)
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


def _just_before(key: str) -> str:
    """A string sorting just before ``key``: listing after it starts at ``key``."""
    last = key[-1]
    if last == "\x00":
        return key[:-1]
    return key[:-1] + chr(ord(last) - 1) + "\U0010ffff"


def check_backup_id(catalog: Catalog, backup_id: str) -> Backup:
    backup = catalog.backup(backup_id)
    if backup is None:
        known = ", ".join(b.id for b in catalog.backups[-5:]) or "none"
        raise FormatError(f"unknown backup {backup_id!r} (newest: {known})")
    return backup
