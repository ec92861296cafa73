"""The catalog: what the repository holds for one instance, as data the planner can trust."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pitr.catalog.model import Backup, TimelineHistory
from pitr.catalog.segments import SegmentRun


@dataclass(frozen=True)
class Catalog:
    """Everything the planner may know about one instance, read beforehand: pure data."""

    instance: str
    engine: str
    backups: tuple[Backup, ...]
    streams: Mapping[str, SegmentRun] = field(default_factory=dict)
    histories: tuple[TimelineHistory, ...] = ()

    def backup(self, backup_id: str) -> Backup | None:
        return next((b for b in self.backups if b.id == backup_id), None)
