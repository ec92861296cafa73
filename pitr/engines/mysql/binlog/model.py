"""What indexing a binlog produces: :class:`BinlogIndex` and its :class:`Transaction` list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_seconds(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def utc_from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class TableRows:
    """Rows one transaction changed in one table by one operation (None: not countable)."""

    op: str  # "INSERT" | "UPDATE" | "DELETE"
    table: str  # "schema.table"
    rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "table": self.table, "rows": self.rows}

    def __str__(self) -> str:
        count = "rows unknown" if self.rows is None else f"{self.rows} rows"
        return f"{self.op} {self.table}: {count}"


@dataclass(frozen=True, slots=True)
class Transaction:
    """One event group of a binlog.

    ``start`` is the offset of its first event (the GTID event when there is one) and ``end``
    the offset just past its last: the ``--start-position``/``--stop-position`` pair that
    replays exactly this transaction. ``time`` is the commit time (see :func:`index_binlog`).
    ``kind`` is one of "dml", "ddl", "xa-prepare", "xa-commit", "xa-rollback", "other".
    """

    gtid: str | None
    xid: int | None
    time: datetime
    start: int
    end: int
    kind: str
    summary: str
    tables: tuple[TableRows, ...]
    server_id: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "gtid": self.gtid,
            "xid": self.xid,
            "time": _iso(self.time),
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "summary": self.summary,
            "tables": [t.to_dict() for t in self.tables],
            "server_id": self.server_id,
        }


@dataclass(frozen=True, slots=True)
class BinlogIndex:
    """The facts of one binlog file that point-in-time recovery needs.

    ``gtids_before`` is the GTID_LIST (MariaDB) or PREVIOUS_GTIDS (MySQL) the file starts
    with, ``gtids_after`` that plus the GTIDs of the file's complete transactions, in each
    flavour's text form (None when the file has no such event and no GTIDs). ``valid_end`` is
    the offset just past the last complete event; ``truncated`` says a torn event follows it.
    ``event_count`` counts complete top-level events (not those inside compressed payloads).
    """

    name: str
    size: int
    flavor: str  # "mariadb" | "mysql"
    server_version: str
    server_ids: tuple[int, ...]
    checksum: str  # "crc32" | "none"
    first_time: datetime | None
    last_time: datetime | None
    gtids_before: str | None
    gtids_after: str | None
    in_use: bool
    truncated: bool
    valid_end: int
    next_file: str | None
    stopped: bool
    event_count: int
    transactions: tuple[Transaction, ...]

    @property
    def server_id(self) -> int | None:
        """The server id of the format description event (the server that wrote the file)."""
        return self.server_ids[0] if self.server_ids else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "flavor": self.flavor,
            "server_version": self.server_version,
            "server_ids": list(self.server_ids),
            "checksum": self.checksum,
            "first_time": _iso(self.first_time),
            "last_time": _iso(self.last_time),
            "gtids_before": self.gtids_before,
            "gtids_after": self.gtids_after,
            "in_use": self.in_use,
            "truncated": self.truncated,
            "valid_end": self.valid_end,
            "next_file": self.next_file,
            "stopped": self.stopped,
            "event_count": self.event_count,
            "transactions": [t.to_dict() for t in self.transactions],
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event, for ``pitr inspect``. Events inside a TRANSACTION_PAYLOAD carry the
    payload event's offset in ``payload_offset`` and their offset within the payload data."""

    offset: int
    size: int
    type: int
    type_name: str
    timestamp: int
    server_id: int
    flags: int
    fields: dict[str, Any]
    payload_offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "size": self.size,
            "type": self.type,
            "type_name": self.type_name,
            "timestamp": self.timestamp,
            "server_id": self.server_id,
            "flags": self.flags,
            "fields": dict(self.fields),
            "payload_offset": self.payload_offset,
        }
