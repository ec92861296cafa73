"""Which files a PostgreSQL differential sends: real files on disk against the records of a
full (size, modification time in ns, CRC-32 of the copy the full holds)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from pitr.engines.postgresql.backup import RACY_WINDOW_NS, _changed
from pitr.engines.postgresql.files import scan

FULL_START_NS = 1_800_000_000 * 10**9
RACY_FROM = FULL_START_NS - RACY_WINDOW_NS


def written(path: Path, data: bytes, mtime_ns: int) -> list[object]:
    """Write ``data`` with that modification time; the full's record of it."""
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return [len(data), mtime_ns, zlib.crc32(data)]


def to_send(datadir: Path, records: dict[str, list[object]]) -> set[str]:
    files, _ = scan(datadir)
    return {f.name for f in files if not f.is_dir and _changed(f, records, RACY_FROM)}


def test_same_size_same_second_change_is_caught_near_the_full(tmp_path: Path) -> None:
    """A file the full copied while it was written (its time stamp within the window), then
    changed again without its size or time stamp changing: the checksum catches it; the same
    file unchanged is not sent again."""
    during = FULL_START_NS + 400_000_000  # modified while the full ran
    records = {
        "racy-changed": written(tmp_path / "racy-changed", b"aaaa", during),
        "racy-same": written(tmp_path / "racy-same", b"bbbb", during),
        "just-before": written(tmp_path / "just-before", b"cccc", FULL_START_NS - 10**9),
    }
    written(tmp_path / "racy-changed", b"AAAA", during)  # same size, same time stamp
    written(tmp_path / "just-before", b"CCCC", FULL_START_NS - 10**9)
    assert to_send(tmp_path, records) == {"racy-changed", "just-before"}


def test_size_and_time_stamp_decide_outside_the_window(tmp_path: Path) -> None:
    """Long before the full, size and time stamp are trusted (as pgBackRest does without
    --delta): nothing is read, a forged time stamp goes unnoticed."""
    old = FULL_START_NS - 3600 * 10**9
    records = {
        "same": written(tmp_path / "same", b"1234", old),
        "grown": written(tmp_path / "grown", b"1234", old),
        "touched": written(tmp_path / "touched", b"1234", old),
        "forged": written(tmp_path / "forged", b"1234", old),
    }
    written(tmp_path / "grown", b"12345", old)
    written(tmp_path / "touched", b"1234", old + 1)  # one nanosecond later
    written(tmp_path / "forged", b"5678", old)
    (tmp_path / "new").write_bytes(b"x")
    assert to_send(tmp_path, records) == {"grown", "touched", "new"}
