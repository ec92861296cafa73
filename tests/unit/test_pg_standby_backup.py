"""The pure parts of a backup on a PostgreSQL standby (pitr/engines/postgresql/standby.py): the
segment the backup's end lies in, and pg_control held back to be copied after every other file."""

from __future__ import annotations

from pathlib import Path

from pitr.engines.postgresql.files import scan
from pitr.engines.postgresql.standby import CONTROL, Standby, last_segment

SIZE = 16 * 1024 * 1024


def test_the_segment_holding_the_end() -> None:
    assert last_segment(1, 0x3000028, SIZE) == "000000010000000000000003"
    # An end on a segment boundary ends the segment before it, which is complete.
    assert last_segment(1, 0x3000000, SIZE) == "000000010000000000000002"
    assert last_segment(2, 0x1_00000000, SIZE) == "0000000200000000000000FF"
    assert last_segment(3, 0x1_00000001, 64 * 1024 * 1024) == "000000030000000100000000"


def test_pg_control_is_held_back_for_last(tmp_path: Path) -> None:
    (tmp_path / "global").mkdir()
    (tmp_path / "base" / "1").mkdir(parents=True)
    for name in (CONTROL, "global/1262", "base/1/1259", "PG_VERSION"):
        (tmp_path / name).write_bytes(b"x")
    files, _ = scan(tmp_path)
    last, rest = Standby.held_back(files)
    assert [f.name for f in last] == [CONTROL]
    assert sorted(f.name for f in rest) == sorted(f.name for f in files if f.name != CONTROL)
