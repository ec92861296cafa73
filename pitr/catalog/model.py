"""The catalog's data: frozen dataclasses, and their JSON documents (format 1, see
docs/catalog-format.md). No I/O here: ``pitr.catalog.repository`` reads and publishes them.

Positions are kept twice: as the engine's own text (``0/16533E18``, ``mysql-bin.000003:1234``),
which is what people read, and as an integer *key* that orders positions within one stream
(a PostgreSQL LSN; for a binlog, the byte offset within its file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pitr.domain.timeutil import format_time, from_document
from pitr.errors import FormatError
from pitr.storage.transfer import StoredObject

FORMAT_MAJOR = 1
FORMAT = f"{FORMAT_MAJOR}.0"

BackupType = Literal["full", "diff", "incr"]


def check_format(doc: Any, where: str, kind: str) -> dict[str, Any]:
    """Refuse a document that is not a JSON object of ``kind`` in a format major we know."""
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: not a catalog document (expected a JSON object)")
    version = str(doc.get("format", ""))
    major = version.split(".", 1)[0]
    if not major.isdigit():
        raise FormatError(f"{where}: no catalog format version")
    if int(major) != FORMAT_MAJOR:
        raise FormatError(
            f"{where}: catalog format {version} is not supported by this pitr "
            f"(it reads format {FORMAT_MAJOR}.x)",
            hint="upgrade pitr to read this repository",
        )
    if doc.get("kind") != kind:
        raise FormatError(f"{where}: expected a {kind} document, found {doc.get('kind')!r}")
    return doc


def _major(doc: Mapping[str, Any]) -> str | None:
    """``server_major``: absent from documents written before pitr recorded it (None)."""
    value = doc.get("server_major")
    return None if value is None else str(value)


def _time(doc: Mapping[str, Any], key: str) -> datetime | None:
    return from_document(doc.get(key))


def _required_time(doc: Mapping[str, Any], key: str) -> datetime:
    value = from_document(doc.get(key))
    if value is None:
        raise KeyError(key)
    return value


@dataclass(frozen=True)
class RestorePoint:
    """A named restore point (PostgreSQL ``pg_create_restore_point``)."""

    name: str
    position: str
    key: int
    time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "key": self.key,
            "time": format_time(self.time),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RestorePoint:
        return cls(doc["name"], doc["position"], int(doc["key"]), _required_time(doc, "time"))


@dataclass(frozen=True)
class LogSegment:
    """One archived transaction log file (a WAL segment or a binlog) and what it holds.

    ``start_key``/``end_key`` bound the positions the file covers within ``stream``;
    commit times are those of the commit records actually in the file.
    """

    name: str
    stream: str
    system: str
    start: str
    end: str
    start_key: int
    end_key: int
    object: StoredObject
    commits: int = 0
    last_key: int | None = None  # position of the last commit or restore point record
    first_commit: datetime | None = None
    last_commit: datetime | None = None
    min_commit: datetime | None = None  # commit times need not be in log order
    max_commit: datetime | None = None
    xid_min: int | None = None
    xid_max: int | None = None
    gtids_before: str | None = None
    gtids_after: str | None = None
    restore_points: tuple[RestorePoint, ...] = ()
    kind: str = "wal"
    server_major: str | None = None  # "18", "10.11": the server's major version (or None)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """Stream-qualified name: log names repeat across streams."""
        return f"{self.stream}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT, "kind": "log-segment"}
        doc.update(
            {
                "name": self.name,
                "stream": self.stream,
                "system": self.system,
                "log_kind": self.kind,
                "start": self.start,
                "end": self.end,
                "start_key": self.start_key,
                "end_key": self.end_key,
                "commits": self.commits,
                "last_key": self.last_key,
                "first_commit": format_time(self.first_commit),
                "last_commit": format_time(self.last_commit),
                "min_commit": format_time(self.min_commit),
                "max_commit": format_time(self.max_commit),
                "xid_min": self.xid_min,
                "xid_max": self.xid_max,
                "gtids_before": self.gtids_before,
                "gtids_after": self.gtids_after,
                "restore_points": [r.to_dict() for r in self.restore_points],
                "server_major": self.server_major,
                "object": self.object.to_dict(),
                "extra": dict(self.extra),
            }
        )
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LogSegment:
        return cls(
            name=doc["name"],
            stream=doc["stream"],
            system=doc["system"],
            kind=doc.get("log_kind", "wal"),
            start=doc["start"],
            end=doc["end"],
            start_key=int(doc["start_key"]),
            end_key=int(doc["end_key"]),
            object=StoredObject.from_dict(doc["object"]),
            commits=int(doc.get("commits", 0)),
            last_key=doc.get("last_key"),
            first_commit=_time(doc, "first_commit"),
            last_commit=_time(doc, "last_commit"),
            min_commit=_time(doc, "min_commit"),
            max_commit=_time(doc, "max_commit"),
            xid_min=doc.get("xid_min"),
            xid_max=doc.get("xid_max"),
            gtids_before=doc.get("gtids_before"),
            gtids_after=doc.get("gtids_after"),
            restore_points=tuple(RestorePoint.from_dict(r) for r in doc.get("restore_points", [])),
            server_major=_major(doc),
            extra=doc.get("extra", {}),
        )


@dataclass(frozen=True)
class Transaction:
    """One committed transaction as indexed from a log: what ``pitr events`` shows."""

    time: datetime | None
    position: str
    key: int
    xid: int | None = None
    gtid: str | None = None
    end: str | None = None
    summary: str = ""

    def to_list(self) -> list[Any]:
        return [
            format_time(self.time),
            self.position,
            self.key,
            self.xid,
            self.gtid,
            self.end,
            self.summary,
        ]

    @classmethod
    def from_list(cls, row: list[Any]) -> Transaction:
        time, position, key, xid, gtid, end, summary = row
        return cls(from_document(time), position, int(key), xid, gtid, end, summary)


@dataclass(frozen=True)
class SegmentIndex:
    """The per-segment index document: the segment, plus its transactions (for ``events``)."""

    segment: LogSegment
    transactions: tuple[Transaction, ...] = ()
    sealed: str | None = None  # the summaries, encrypted (pitr.catalog.sealing)

    def to_dict(self) -> dict[str, Any]:
        doc = self.segment.to_dict()
        doc["transactions"] = [t.to_list() for t in self.transactions]
        if self.sealed is not None:
            doc["sealed"] = self.sealed
        return doc

    @classmethod
    def from_document(cls, doc: Any, where: str) -> SegmentIndex:
        doc = check_format(doc, where, "log-segment")
        try:
            return cls(
                LogSegment.from_dict(doc),
                tuple(Transaction.from_list(t) for t in doc.get("transactions", [])),
                doc.get("sealed"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed log-segment document ({exc})") from None


@dataclass(frozen=True)
class TimelineHistory:
    """A PostgreSQL timeline history file: how timeline ``timeline`` branched off its parents.

    ``switches`` is ``(parent timeline, switch LSN as integer, LSN text)`` from the file,
    oldest first; ``created`` is when pitr archived it (when the timeline was born).
    """

    timeline: int
    switches: tuple[tuple[int, int, str], ...]
    object: StoredObject
    created: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "timeline-history",
            "timeline": self.timeline,
            "switches": [list(s) for s in self.switches],
            "object": self.object.to_dict(),
            "created": format_time(self.created),
        }

    @classmethod
    def from_document(cls, doc: Any, where: str) -> TimelineHistory:
        doc = check_format(doc, where, "timeline-history")
        try:
            return cls(
                timeline=int(doc["timeline"]),
                switches=tuple((int(p), int(k), str(t)) for p, k, t in doc["switches"]),
                object=StoredObject.from_dict(doc["object"]),
                created=_required_time(doc, "created"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed timeline-history document ({exc})") from None


@dataclass(frozen=True)
class Backup:
    """A backup manifest: written last; its presence means the backup is complete.

    ``start``/``end`` are the positions between which the backup was taken; ``end`` is its
    consistent point (PostgreSQL stop LSN; MariaDB/MySQL binlog position), ``end_time`` the
    time of that point. ``stream`` is the log stream at ``end``.
    """

    id: str
    type: BackupType
    parent: str | None
    instance: str
    engine: str
    system: str
    start_time: datetime
    end_time: datetime
    start: str
    end: str
    start_key: int
    end_key: int
    stream: str
    objects: tuple[StoredObject, ...]
    gtid_state: str | None = None
    engine_meta: Mapping[str, Any] = field(default_factory=dict)
    host: str = ""
    pitr_version: str = ""
    server_major: str | None = None  # "18", "10.11": the server's major version (or None)

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def raw_bytes(self) -> int:
        return sum(o.raw_size for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "backup-manifest",
            "id": self.id,
            "type": self.type,
            "parent": self.parent,
            "instance": self.instance,
            "engine": self.engine,
            "system": self.system,
            "start_time": format_time(self.start_time),
            "end_time": format_time(self.end_time),
            "start": self.start,
            "end": self.end,
            "start_key": self.start_key,
            "end_key": self.end_key,
            "stream": self.stream,
            "gtid_state": self.gtid_state,
            "bytes": self.bytes,
            "raw_bytes": self.raw_bytes,
            "objects": [o.to_dict() for o in self.objects],
            "engine_meta": dict(self.engine_meta),
            "host": self.host,
            "pitr_version": self.pitr_version,
            "server_major": self.server_major,
        }

    @classmethod
    def from_document(cls, doc: Any, where: str) -> Backup:
        doc = check_format(doc, where, "backup-manifest")
        try:
            return cls(
                id=doc["id"],
                type=doc["type"],
                parent=doc.get("parent"),
                instance=doc["instance"],
                engine=doc["engine"],
                system=doc["system"],
                start_time=_required_time(doc, "start_time"),
                end_time=_required_time(doc, "end_time"),
                start=doc["start"],
                end=doc["end"],
                start_key=int(doc["start_key"]),
                end_key=int(doc["end_key"]),
                stream=doc["stream"],
                objects=tuple(StoredObject.from_dict(o) for o in doc["objects"]),
                gtid_state=doc.get("gtid_state"),
                engine_meta=doc.get("engine_meta", {}),
                host=doc.get("host", ""),
                pitr_version=doc.get("pitr_version", ""),
                server_major=_major(doc),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed backup manifest ({exc})") from None
