"""Realistic catalogs for planner tests: PostgreSQL timelines of WAL segments, backups, histories.

Segment ``n`` of timeline ``t`` covers LSNs ``[n * 16 MiB, (n + 1) * 16 MiB)``; its commits
happen between minute ``n`` and minute ``n`` + 50 s after ``T0`` (xids ``100n`` to
``100n + 9``), unless a test says otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pitr.catalog import Catalog
from pitr.catalog.layout import Layout
from pitr.catalog.model import Backup, LogSegment, RestorePoint, TimelineHistory, Transaction
from pitr.catalog.segments import SegmentRun
from pitr.domain.positions import format_lsn, segment_name, stream_of
from pitr.storage.transfer import StoredObject

SEG = 16 * 1024 * 1024
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SYSTEM = "7301234567890123456"


def obj(key: str, size: int = 1000) -> StoredObject:
    return StoredObject(key, size, "0" * 64, size * 3, "zstd")


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def wal(
    n: int,
    tli: int = 1,
    system: str = SYSTEM,
    *,
    commits: bool = True,
    restore_points: Iterable[str] = (),
    first: datetime | None = None,
    last: datetime | None = None,
) -> LogSegment:
    start = n * SEG
    name = segment_name(tli, start, SEG)
    first = first or minute(n)
    last = last or minute(n) + timedelta(seconds=50)
    points = tuple(
        RestorePoint(p, format_lsn(start + 100), start + 100, first) for p in restore_points
    )
    return LogSegment(
        name=name,
        stream=stream_of(tli),
        system=system,
        start=format_lsn(start),
        end=format_lsn(start + SEG),
        start_key=start,
        end_key=start + SEG,
        object=obj(Layout("main").log_object(stream_of(tli), name, ".zst")),
        commits=10 if commits else 0,
        last_key=start + SEG - 1000 if commits else None,
        first_commit=first if commits else None,
        last_commit=last if commits else None,
        min_commit=first if commits else None,
        max_commit=last if commits else None,
        xid_min=100 * n if commits else None,
        xid_max=100 * n + 9 if commits else None,
        restore_points=points,
    )


def transactions(seg: LogSegment) -> list[Transaction]:
    """The ten commits of a ``wal()`` segment, evenly spread over its range and time."""
    assert seg.first_commit is not None and seg.xid_min is not None
    return [
        Transaction(
            time=seg.first_commit + timedelta(seconds=5 * k),
            position=format_lsn(seg.start_key + 1000 + k * 1000),
            key=seg.start_key + 1000 + k * 1000,
            xid=seg.xid_min + k,
            summary=f"INSERT public.t: {k + 1} rows",
        )
        for k in range(10)
    ]


def backup(
    backup_id: str,
    start_seg: int,
    *,
    kind: str = "full",
    parent: str | None = None,
    tli: int = 1,
    system: str = SYSTEM,
    end_seg: int | None = None,
) -> Backup:
    """A backup started in segment ``start_seg``, consistent 1 MiB later (or in ``end_seg``),
    at minute ``start_seg`` + 55 s."""
    start = start_seg * SEG + 4096
    end = (end_seg * SEG if end_seg is not None else start_seg * SEG) + SEG // 16
    return Backup(
        id=backup_id,
        type=kind,  # type: ignore[arg-type]
        parent=parent,
        instance="main",
        engine="postgresql",
        system=system,
        start_time=minute(start_seg) + timedelta(seconds=52),
        end_time=minute(end_seg if end_seg is not None else start_seg) + timedelta(seconds=55),
        start=format_lsn(start),
        end=format_lsn(end),
        start_key=start,
        end_key=end,
        stream=stream_of(tli),
        objects=(obj(f"main/backups/{backup_id}/base.tar.zst", 50_000),),
        engine_meta={"wal_segment_size": SEG},
    )


def history(tli: int, switches: list[tuple[int, int]], created: datetime) -> TimelineHistory:
    return TimelineHistory(
        timeline=tli,
        switches=tuple((parent, key, format_lsn(key)) for parent, key in switches),
        object=obj(f"main/history/{tli:08X}.history"),
        created=created,
    )


def pg_catalog(
    backups: Iterable[Backup],
    segments: Iterable[LogSegment],
    histories: Iterable[TimelineHistory] = (),
) -> Catalog:
    streams: dict[str, list[LogSegment]] = defaultdict(list)
    for seg in segments:
        streams[seg.stream].append(seg)
    return Catalog(
        instance="main",
        engine="postgresql",
        backups=tuple(backups),
        streams={name: SegmentRun.of(name, segs) for name, segs in streams.items()},
        histories=tuple(histories),
    )
