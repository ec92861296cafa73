"""Shipping closed binlogs: each is indexed, uploaded (zstd, sha256), then its index document
is published (create-if-absent) — the document's presence means the binlog is archived.

``pitr archive`` ships every binlog ``SHOW BINARY LOGS`` lists except the last (open) one; run
again, it finds them archived by their head and size without reading them (idempotent). A
binlog purged before it was shipped leaves a hole in its stream's numbering: reported here,
refused by the planner for any target across it.

Another pitr may ship the same binlogs meanwhile (``archive --follow`` holds its own lock, so a
cron ``pitr archive`` runs beside it): what a shipper knows is loaded once, so before it starts
a new stream or reports a gap it reloads the catalog, and before it uploads it asks whether the
file's index document appeared (one small read). Two shipping the same file at the same moment
upload the same bytes to the same key; the second to publish finds the same content: already
archived.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitr.catalog.store import CatalogStore
from pitr.catalog.summary import compact
from pitr.domain.timeutil import from_document, utcnow
from pitr.engines.base import Archived
from pitr.engines.mysql.binlog import index_binlog_file
from pitr.engines.mysql.server import MyServer
from pitr.engines.mysql.streams import (
    Head,
    Known,
    assign_stream,
    known_of,
    read_head,
    segment_document,
)
from pitr.errors import FormatError, PitrError, PreconditionFailed, RepositoryError
from pitr.storage.transfer import Compression, upload

log = logging.getLogger("pitr.mysql")
COMPACT_EVERY = 100  # fold a stream's index documents into a summary page this often


@dataclass
class Shipper:
    """Ships binlog files of one server into one repository, remembering what it has seen."""

    store: CatalogStore
    compression: Compression
    flavor: str
    system: str
    known: list[Known] = field(default_factory=list)
    backups: Sequence[Any] = ()
    archived: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, store: CatalogStore, server: MyServer, compression: Compression) -> Shipper:
        catalog = store.load()
        return cls(store, compression, server.flavor, server.system(),
                   known_of(catalog.streams), catalog.backups)  # fmt: skip

    def stream_of(self, head: Head, size: int | None = None) -> tuple[str, bool]:
        return assign_stream(self.flavor, self.known, self.backups, head, size)

    def refresh(self) -> None:
        """Reload what the repository holds (another pitr may have archived since)."""
        catalog = self.store.load()
        self.known, self.backups = known_of(catalog.streams), catalog.backups

    def _placed(self, head: Head, size: int) -> tuple[str, bool]:
        """``stream_of``, from a fresh catalog when this file would not simply follow one
        this shipper knows (a new stream, or a gap: perhaps only unknown here)."""
        stream, done = self.stream_of(head, size)
        if done or any(k.stream == stream and k.number in (head.number - 1, head.number)
                       for k in self.known):  # fmt: skip
            return stream, done
        self.refresh()
        return self.stream_of(head, size)

    def _published_meanwhile(self, stream: str, head: Head, size: int) -> bool:
        """True when this very file's index document appeared since the catalog was read;
        ``RepositoryError`` when one for another file of that name did (before the upload
        could overwrite its data)."""
        existing = self.store.segment_index(stream, head.name)
        if existing is None:
            return False
        seg = existing.segment
        created = from_document(seg.extra.get("created"))
        if (seg.gtids_before, created, seg.object.raw_size) != (head.gtids_before, head.created,
                                                               size):  # fmt: skip
            raise RepositoryError(
                f"{head.name} is already archived with different content "
                f"({self.store.layout.log_index(stream, head.name)})",
                hint="two servers may be archiving into the same repository and instance",
            )
        self.known.append(Known(stream, head.name, self.system, seg.gtids_before,
                                seg.gtids_after, size, head.created))  # fmt: skip
        return True

    def ship(self, path: Path, name: str | None = None, *, rotated: bool = False) -> bool:
        """Archive one closed binlog; False when it already is. With ``rotated``, a file
        that does not end with its ROTATE (or STOP) event yet is left for later (False)."""
        name = name or path.name
        size = path.stat().st_size
        head = read_head(path, self.system)
        if head.name != name:  # a spool copy keeps the server's name
            head = Head(name, head.system, head.server_id, head.gtids_before, head.created)
        stream, done = self._placed(head, size)
        if done:
            self.already.append(name)
            return False
        index = index_binlog_file(path)
        if rotated and index.next_file is None and not index.stopped:
            return False
        if self._published_meanwhile(stream, head, size):
            self.already.append(name)
            log.info("already archived %s (stream %s)", name, stream)
            return False
        if name != index.name:
            index = _renamed(index, name)
        self._note_gap(stream, head)
        key = self.store.layout.log_object(stream, name, self.compression.suffix)
        with path.open("rb") as fh:
            stored = upload(self.store.storage, key, fh, self.compression, hash_raw=True)
        if stored.raw_size != size:
            raise FormatError(f"{path}: changed while it was archived ({size} -> "
                              f"{stored.raw_size} bytes); is it still open?")  # fmt: skip
        doc = segment_document(index, stream, self.system, stored, utcnow())
        published = self.store.publish_segment(doc)
        seg = doc.segment
        self.known.append(Known(stream, name, self.system, seg.gtids_before, seg.gtids_after,
                                size, head.created))  # fmt: skip
        (self.archived if published else self.already).append(name)
        log.info("%s %s (stream %s, %d transactions)",
                 "archived" if published else "already archived", name, stream,
                 seg.commits)  # fmt: skip
        if published and head.number % COMPACT_EVERY == 0:
            try:
                compact(self.store.storage, self.store.layout, stream)
            except PitrError as exc:  # the summary is a cache: archiving has succeeded
                log.warning("could not update the catalog summary: %s", exc.message)
        return published

    def _note_gap(self, stream: str, head: Head) -> None:
        numbers = [k.number for k in self.known if k.stream == stream]
        below = [n for n in numbers if n < head.number]
        if below and max(below) < head.number - 1:
            first, last = max(below) + 1, head.number - 1
            base, width = head.name.rsplit(".", 1)[0], len(head.name.rsplit(".", 1)[1])
            names = f"{base}.{first:0{width}d}" + (
                f" to {base}.{last:0{width}d}" if last > first else ""
            )
            message = f"{names} (stream {stream}) were purged before pitr archived them"
            log.warning("gap in the archived binlogs: %s", message)
            self.gaps.append(message)

    def result(self) -> Archived:
        return Archived(len(self.archived), len(self.already), self.archived, self.gaps)


def _renamed(index: Any, name: str) -> Any:
    from dataclasses import replace

    return replace(index, name=name)


def archive_closed(
    server: MyServer, shipper: Shipper, *, local: bool = True
) -> list[tuple[str, int]]:
    """Ship every binlog the server has closed; returns ``SHOW BINARY LOGS``. A closed binlog
    missing from the binlog directory is an error unless not ``local`` (``--follow`` may run
    on another host: it copies the binlogs over the connection instead)."""
    logs = server.binary_logs()
    directory = server.binlog_basename().parent
    for name, _size in logs[:-1]:
        path = directory / name
        if not path.is_file():
            if local:
                raise PreconditionFailed(
                    f"instance {server.settings.name}: binlog {name} is not in {directory}",
                    hint="run pitr on the database host, or set binlog_dir",
                )
            continue
        shipper.ship(path)
    return logs


def flush_and_archive(server: MyServer, shipper: Shipper) -> str:
    """``FLUSH BINARY LOGS``, then ship every closed binlog: the one that was open (holding
    the newest transactions) is in the repository afterwards. Returns its name."""
    before = server.binary_logs()[-1][0]
    server.query("FLUSH BINARY LOGS")
    archive_closed(server, shipper)
    return before
