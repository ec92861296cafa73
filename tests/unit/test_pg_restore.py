"""Which files of a full backup a restore with a differential leaves to the differential."""

from __future__ import annotations

from dataclasses import replace

from catalogs import backup

from pitr.engines.postgresql.restore import superseded


def test_each_file_comes_once_from_the_backup_with_its_newest_copy() -> None:
    full = replace(
        backup("F", 1),
        engine_meta={
            "files": {
                "base/5/1": [8192, 100, 11],  # unchanged
                "base/5/2": [8192, 100, 22],  # changed: the differential sent it
                "base/5/3": [8192, 100, 33],  # dropped after the full
                "global/pg_control": [8192, 100, 44],  # re-sent with identical content
            }
        },
    )
    diff = replace(
        backup("D", 3, kind="diff", parent="F"),
        engine_meta={
            "files": {
                "base/5/1": [8192, 100, 11],
                "base/5/2": [16384, 200, 55],
                "base/5/4": [8192, 200, 66],  # new since the full
                "global/pg_control": [8192, 100, 44],
            }
        },
    )
    assert superseded(full, diff) == {"base/5/2", "base/5/3"}
    assert superseded(full, None) == frozenset()
