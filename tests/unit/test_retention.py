"""``plan_expiry``: which backups and logs a retention policy removes, on built catalogs.

The PostgreSQL catalog: fulls F1 (segment 1), F2 (7), F3 (10), differentials D1 of F1 (4) and
D3 of F3 (12), WAL segments 0-13 (segment ``n`` around minute ``n``, see tests/catalogs.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from catalogs import backup, minute, pg_catalog, wal

from pitr.catalog import Catalog
from pitr.catalog.model import Backup, LogSegment
from pitr.catalog.segments import SegmentRun
from pitr.config.settings import RetentionSettings
from pitr.domain.positions import FILE_SHIFT
from pitr.errors import UsageError
from pitr.planner import window
from pitr.planner.retention import Expiry, plan_expiry
from pitr.storage.transfer import StoredObject

NOW = minute(14)
BACKUPS = (
    backup("F1", 1),
    backup("D1", 4, kind="diff", parent="F1"),
    backup("F2", 7),
    backup("F3", 10),
    backup("D3", 12, kind="diff", parent="F3"),
)
SEGMENTS = [wal(n) for n in range(14)]


def days_before(moment: datetime) -> float:
    """The ``days`` setting whose cutoff, from ``NOW``, is ``moment``."""
    return (NOW - moment) / timedelta(days=1)


def expire(policy: RetentionSettings, catalog: Catalog | None = None) -> Expiry:
    return plan_expiry(catalog or pg_catalog(BACKUPS, SEGMENTS), policy, NOW)


def ids(backups: tuple[Backup, ...]) -> list[str]:
    return [b.id for b in backups]


def names(segments: tuple[LogSegment, ...]) -> list[str]:
    return [s.name for s in segments]


def after(catalog: Catalog, expiry: Expiry) -> Catalog:
    """The catalog once ``expiry`` is applied."""
    gone = {s.ref for s in expiry.segments}
    streams = {
        stream: SegmentRun.of(stream, [s for s in run if s.ref not in gone])
        for stream, run in catalog.streams.items()
    }
    return replace(catalog, backups=expiry.keep, streams=streams)


@pytest.mark.parametrize(
    ("full", "kept", "first_kept"),
    [
        (1, ["F3", "D3"], 10),
        (2, ["F2", "F3", "D3"], 7),
        (3, ["F1", "D1", "F2", "F3", "D3"], 1),
        (9, ["F1", "D1", "F2", "F3", "D3"], 1),
    ],
)
def test_full_keeps_the_newest_fulls_with_their_differentials(
    full: int, kept: list[str], first_kept: int
) -> None:
    expiry = expire(RetentionSettings(full=full))
    assert ids(expiry.keep) == kept
    assert ids(expiry.backups) == [b.id for b in BACKUPS if b.id not in kept]
    # WAL goes up to the segment the oldest kept backup starts in, exclusive.
    assert names(expiry.segments) == [wal(n).name for n in range(first_kept)]
    gone = sum(b.bytes for b in expiry.backups) + sum(s.object.size for s in expiry.segments)
    assert expiry.bytes == gone


def test_a_differential_goes_only_with_its_full() -> None:
    # F1 is the newest full before 7 min: kept, and D1 (older than the cutoff) with it.
    assert ids(expire(RetentionSettings(days=days_before(minute(7)))).backups) == []
    # F2 is the newest before 8 min: F1 goes, and D1 with it.
    assert ids(expire(RetentionSettings(days=days_before(minute(8)))).backups) == ["F1", "D1"]
    # D3 is the newest backup of all, F3 the newest full: both stay, whatever the policy.
    assert ids(expire(RetentionSettings(full=1)).keep) == ["F3", "D3"]


@pytest.mark.parametrize(
    ("cutoff", "kept"),
    [
        (minute(13), ["F3", "D3"]),  # F3, consistent at 10:55, is the newest before
        (minute(10) + timedelta(seconds=54), ["F2", "F3", "D3"]),  # F3 only at 10:55
        (minute(8), ["F2", "F3", "D3"]),
        (minute(7), ["F1", "D1", "F2", "F3", "D3"]),
        (minute(0), ["F1", "D1", "F2", "F3", "D3"]),  # nothing before: everything is recent
    ],
)
def test_days_keeps_what_reaches_back_that_far(cutoff: datetime, kept: list[str]) -> None:
    expiry = expire(RetentionSettings(days=days_before(cutoff)))
    assert ids(expiry.keep) == kept


@pytest.mark.parametrize(
    ("full", "cutoff", "kept"),
    [
        (1, minute(8), ["F2", "F3", "D3"]),  # days needs F2, full only F3
        (2, minute(13), ["F2", "F3", "D3"]),  # full needs F2, days only F3
        (1, minute(13), ["F3", "D3"]),
        (3, minute(13), ["F1", "D1", "F2", "F3", "D3"]),
    ],
)
def test_full_and_days_keep_the_union(full: int, cutoff: datetime, kept: list[str]) -> None:
    expiry = expire(RetentionSettings(full=full, days=days_before(cutoff)))
    assert ids(expiry.keep) == kept


@pytest.mark.parametrize("minutes", [0.5, 1, 2, 3.5, 4, 5, 6.9, 7, 7.95, 8, 9, 10.9, 11, 12, 13])
def test_the_window_never_shrinks_below_days(minutes: float) -> None:
    """Whatever ``days`` is, every moment that was recoverable in the last ``days`` stays so."""
    catalog = pg_catalog(BACKUPS, SEGMENTS)
    cutoff = minute(minutes)
    before = window(catalog)
    assert before.earliest == minute(1) + timedelta(seconds=55)  # F1's consistent point
    for full in (None, 1):
        policy = RetentionSettings(full=full, days=days_before(cutoff))
        now = window(after(catalog, expire(policy, catalog)))
        assert now.latest == before.latest
        assert now.earliest is not None and now.earliest <= max(cutoff, before.earliest)


def test_logs_stay_while_a_kept_backup_needs_them() -> None:
    """The kept backup can still replay from its start, across a gap before it: only the
    segments that end before it starts go."""
    segments = [wal(n) for n in (0, 1, 2, 5, 6, 7, 8, 9)]  # 3 and 4 never archived
    catalog = pg_catalog([backup("F1", 1), backup("F2", 6)], segments)
    expiry = expire(RetentionSettings(full=1), catalog)
    assert ids(expiry.keep) == ["F2"]
    assert names(expiry.segments) == [wal(n).name for n in (0, 1, 2, 5)]
    kept = after(catalog, expiry)
    needed_from = expiry.keep[0].start_key
    assert all(s.end_key > needed_from for run in kept.streams.values() for s in run)
    assert window(kept).latest == window(catalog).latest


def test_no_backup_expires_no_log() -> None:
    expiry = expire(RetentionSettings(full=1), pg_catalog([], SEGMENTS))
    assert (expiry.keep, expiry.backups, expiry.segments) == ((), (), ())


def test_no_policy_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no retention policy") as info:
        expire(RetentionSettings())
    assert info.value.exit_code == 2


def test_unfinished_backups_are_passed_through() -> None:
    orphans = {"F9": ["main/backups/F9/base.tar.zst"]}
    expiry = plan_expiry(pg_catalog(BACKUPS, SEGMENTS), RetentionSettings(full=9), NOW, orphans)
    assert expiry.orphans == orphans and expiry.backups == ()


# --- binlogs ------------------------------------------------------------------------------

OLD_STREAM = "1-mysql-bin.000001-0ld0ld00"
STREAM = "2-mysql-bin.000001-0badcafe"


def binlog(n: int, stream: str = STREAM, at: datetime | None = None) -> LogSegment:
    """Binlog file ``n``: one transaction at minute ``n`` (or ``at``)."""
    when = at or minute(n)
    return LogSegment(
        name=f"mysql-bin.{n:06d}",
        stream=stream,
        system="1",
        start=f"mysql-bin.{n:06d}:4",
        end=f"mysql-bin.{n:06d}:1000",
        start_key=n << FILE_SHIFT | 4,
        end_key=n << FILE_SHIFT | 1000,
        object=StoredObject(
            f"main/logs/{stream}/mysql-bin.{n:06d}.zst", 400, "0" * 64, 1000, "zstd"
        ),
        commits=1,
        first_commit=when,
        last_commit=when,
        min_commit=when,
        max_commit=when,
        kind="binlog",
    )


def binlog_backup(backup_id: str, n: int) -> Backup:
    """A full backup in the middle of binlog file ``n``, at minute ``n`` + 30 s."""
    return Backup(
        id=backup_id,
        type="full",
        parent=None,
        instance="main",
        engine="mariadb",
        system="1",
        start_time=minute(n) + timedelta(seconds=25),
        end_time=minute(n) + timedelta(seconds=30),
        start=f"mysql-bin.{n:06d}:500",
        end=f"mysql-bin.{n:06d}:500",
        start_key=n << FILE_SHIFT | 500,
        end_key=n << FILE_SHIFT | 500,
        stream=STREAM,
        objects=(
            StoredObject(f"main/backups/{backup_id}/data.xb.zst", 5000, "0" * 64, 9000, "zstd"),
        ),
    )


def binlog_catalog(old_stream: list[LogSegment]) -> Catalog:
    segments = [*old_stream, *(binlog(n) for n in range(1, 7))]
    return Catalog(
        instance="main",
        engine="mariadb",
        backups=(binlog_backup("B2", 2), binlog_backup("B4", 4)),
        streams={
            s: SegmentRun.of(s, [x for x in segments if x.stream == s])
            for s in {x.stream for x in segments}
        },
    )


def test_binlogs_go_before_the_file_a_kept_backup_starts_in() -> None:
    old = [binlog(n, OLD_STREAM, at=minute(n / 10)) for n in (1, 2)]  # all before B4
    expiry = plan_expiry(binlog_catalog(old), RetentionSettings(full=1), NOW)
    assert ids(expiry.keep) == ["B4"]
    expired = sorted((s.stream, s.name) for s in expiry.segments)
    assert expired == sorted(
        [(OLD_STREAM, "mysql-bin.000001"), (OLD_STREAM, "mysql-bin.000002")]
        + [(STREAM, f"mysql-bin.{n:06d}") for n in (1, 2, 3)]
    )  # mysql-bin.000004 holds B4's position: replay starts there


def test_an_old_stream_with_a_commit_after_a_kept_backup_stays() -> None:
    old = [binlog(1, OLD_STREAM, at=minute(0)), binlog(2, OLD_STREAM, at=minute(5))]
    expiry = plan_expiry(binlog_catalog(old), RetentionSettings(full=1), NOW)
    assert not [s for s in expiry.segments if s.stream == OLD_STREAM]
