"""A restore plan: what ``pitr plan`` prints and exactly what ``recover``/``restore`` run.

Frozen data, produced by the pure planner (``pitr.planner``), rendered as docs/json.md's
``plan --json``. A plan that is not recoverable names every problem and has no steps to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pitr.catalog.model import Backup, LogSegment, TimelineHistory, Transaction
from pitr.domain.targets import Target
from pitr.domain.timeutil import format_time
from pitr.storage.transfer import StoredObject


@dataclass(frozen=True)
class Window:
    """The span of time a target may lie in: from the oldest usable backup's consistent point
    to the last commit archived contiguously after it."""

    earliest: datetime | None
    latest: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"earliest": format_time(self.earliest), "latest": format_time(self.latest)}

    def describe(self) -> str:
        if self.earliest is None:
            return "no recoverable window (no usable backup)"
        return f"{format_time(self.earliest)} to {format_time(self.latest) or 'unknown'}"


@dataclass(frozen=True)
class ScopedWindow:
    """The window of one PostgreSQL timeline (``scope`` "timeline"), MariaDB GTID domain
    ("domain") or MySQL GTID source ("source"); ``gtids`` is the domain's state at its end."""

    scope: Literal["timeline", "domain", "source"]
    id: int | str
    window: Window
    gtids: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {self.scope: self.id, **self.window.to_dict()}
        if self.gtids is not None:
            doc["gtids"] = self.gtids
        return doc


@dataclass(frozen=True)
class Step:
    """One step of a plan, in order: restore a full, apply a differential and/or block-level
    incrementals (oldest first), replay logs."""

    action: Literal["restore_full", "apply_diff", "apply_incr", "replay_logs"]
    objects: tuple[StoredObject, ...]
    backup: Backup | None = None
    segments: tuple[LogSegment, ...] = ()
    start: str | None = None
    stop: str | None = None

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"action": self.action}
        if self.backup is not None:
            doc["backup"] = self.backup.id
        if self.action == "replay_logs":
            doc["from"] = self.start
            doc["to"] = self.stop
            doc["logs"] = [s.name for s in self.segments]
        doc["bytes"] = self.bytes
        return doc


@dataclass(frozen=True)
class Stop:
    """Where replay is expected to end, to be checked after recovery.

    ``transaction`` is the last transaction the recovered instance must contain (None when
    the target keeps no transaction after the backup); ``key`` is the stop position within
    ``stream``; ``at_end`` means replay runs to the end of the archived logs.
    """

    stream: str
    key: int | None = None
    position: str | None = None
    transaction: Transaction | None = None
    at_end: bool = False


@dataclass(frozen=True)
class Plan:
    instance: str
    datastore: str
    target: Target
    recoverable: bool
    steps: tuple[Step, ...] = ()
    window: Window = Window(None, None)
    problems: tuple[str, ...] = ()
    timeline: int | None = None  # PostgreSQL: the timeline replay follows
    stop: Stop | None = None
    notes: tuple[str, ...] = field(default=())
    #: PostgreSQL: the timeline history file(s) replay reads to follow ``timeline``
    histories: tuple[TimelineHistory, ...] = ()
    #: the window of every timeline (PostgreSQL) or GTID domain (MariaDB; MySQL: source)
    windows: tuple[ScopedWindow, ...] = ()

    @property
    def full(self) -> Backup | None:
        return next((s.backup for s in self.steps if s.action == "restore_full"), None)

    @property
    def differential(self) -> Backup | None:
        return next((s.backup for s in self.steps if s.action == "apply_diff"), None)

    @property
    def increments(self) -> tuple[Backup, ...]:
        """The block-level incrementals applied after the full (and differential), in order."""
        return tuple(s.backup for s in self.steps if s.action == "apply_incr" and s.backup)

    @property
    def last_backup(self) -> Backup | None:
        """The backup whose consistent point replay starts from: the chain's last link."""
        links = [s.backup for s in self.steps if s.action != "replay_logs" and s.backup]
        return links[-1] if links else None

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        return next((s.segments for s in self.steps if s.action == "replay_logs"), ())

    def required_objects(self) -> tuple[StoredObject, ...]:
        """Every object recovery reads: the steps' and the timeline history files'."""
        objects = [o for step in self.steps for o in step.objects]
        return (*objects, *(h.object for h in self.histories))

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "instance": self.instance,
            "datastore": self.datastore,
            "target": self.target.to_dict(),
            "recoverable": self.recoverable,
            "steps": [s.to_dict() for s in self.steps],
            "window": self.window.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
            "bytes": self.bytes,
        }
        if self.timeline is not None:
            doc["timeline"] = self.timeline
        if self.problems:
            doc["problems"] = list(self.problems)
        if self.notes:
            doc["notes"] = list(self.notes)
        if self.stop is not None and self.stop.transaction is not None:
            tx = self.stop.transaction
            doc["last_transaction"] = {
                "time": format_time(tx.time),
                "xid": tx.xid,
                "gtid": tx.gtid,
                "position": tx.position,
            }
        return {"plan": doc}
