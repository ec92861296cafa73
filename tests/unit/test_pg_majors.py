"""PostgreSQL major versions without a server: page magics, the majors pitr knows, the major
recorded in (or derived for) a backup, and a new system (pg_upgrade) without a full backup."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from catalogs import SEG, SYSTEM, backup, minute, pg_catalog, wal

from pitr.catalog.model import Backup, LogSegment, SegmentIndex
from pitr.commands.status import health
from pitr.config.settings import StatusSettings
from pitr.engines.postgresql.versions import (
    backup_major,
    major_of,
    require_known,
    unknown_version,
)
from pitr.engines.postgresql.walfile import read_long_header
from pitr.errors import FormatError, PreconditionFailed
from pitr.planner.common import without_full

NEW_SYSTEM = "7716273477793030766"


def long_header(magic: int) -> bytes:
    """A first page header as PostgreSQL writes it (XLP_LONG_HEADER, 16 MB, 8 KiB pages)."""
    return struct.pack("<HHIQI4xQII", magic, 0x0002, 1, 0x1000000, 0, 7301, SEG, 8192)


@pytest.mark.parametrize(
    ("magic", "major"), [(0xD110, 15), (0xD113, 16), (0xD116, 17), (0xD118, 18)]
)
def test_page_magic_of_each_supported_version(magic: int, major: int) -> None:
    assert read_long_header(long_header(magic), "seg").version == major


def test_page_magic_of_a_newer_version_says_so() -> None:
    with pytest.raises(FormatError) as newer:
        read_long_header(long_header(0xD11B), "seg")
    assert newer.value.message.startswith(
        "seg: WAL of a PostgreSQL newer than 18 (page magic 0xD11B)"
    )
    assert newer.value.hint and "install a pitr release" in newer.value.hint
    with pytest.raises(FormatError, match=r"not a PostgreSQL WAL segment \(page magic 0x1234\)"):
        read_long_header(long_header(0x1234), "seg")


def test_majors_pitr_knows() -> None:
    assert [major_of(n) for n in (150014, 160002, 170010, 180006, 190000)] == [15, 16, 17, 18, 19]
    require_known("instance main", 18)
    with pytest.raises(PreconditionFailed) as unknown:
        require_known("instance main", 19)
    assert unknown.value.exit_code == 6
    assert unknown.value.message.startswith("instance main is PostgreSQL 19, which pitr ")
    assert unknown.value.message.endswith("(it knows PostgreSQL 13 to 18)")
    assert unknown_version("WAL segment X", 19, wal=True).exit_code == 3


def test_backup_major_recorded_or_derived() -> None:
    full = backup("F1", 1)
    assert backup_major(full) is None  # neither recorded nor derivable
    older = replace(full, engine_meta={**full.engine_meta, "server_version_num": 160002})
    assert backup_major(older) == 16
    assert backup_major(replace(older, server_major="18")) == 18


def test_server_major_in_documents_is_optional() -> None:
    full = replace(backup("F1", 1), server_major="18")
    doc = full.to_dict()
    assert doc["server_major"] == "18"
    assert Backup.from_document(doc, "m").server_major == "18"
    del doc["server_major"]  # written before pitr recorded it
    assert Backup.from_document(doc, "m").server_major is None
    seg = replace(wal(1), server_major="17")
    index = SegmentIndex(seg).to_dict()
    assert SegmentIndex.from_document(index, "i").segment.server_major == "17"
    del index["server_major"]
    assert LogSegment.from_dict(index).server_major is None


def test_a_new_system_without_a_full_backup() -> None:
    """After pg_upgrade: WAL of a new system, full backups of the old one only."""
    old = backup("F1", 1)
    segments = [wal(n) for n in range(1, 4)] + [wal(5, system=NEW_SYSTEM)]
    segments[-1] = replace(segments[-1], extra={"archived_at": minute(6).isoformat()})
    catalog = pg_catalog([old], segments)
    problem = without_full(catalog, NEW_SYSTEM)
    assert problem == (
        f"system {NEW_SYSTEM} has no full backup: the repository's full backups are of system "
        f"{SYSTEM} (before a pg_upgrade or a new initdb) and cannot replay its WAL"
    )
    assert without_full(catalog, SYSTEM) is None
    assert without_full(pg_catalog([], segments), NEW_SYSTEM) is None  # no backup at all yet
    now = minute(7)
    checks = {c.name: c for c in health(catalog, StatusSettings(), now)}
    assert checks["system"].state == "CRIT"
    assert checks["system"].detail == f"{problem}; take a new full backup"
    fixed = pg_catalog([old, backup("F2", 5, system=NEW_SYSTEM)], segments)
    assert "system" not in {c.name for c in health(fixed, StatusSettings(), now)}
