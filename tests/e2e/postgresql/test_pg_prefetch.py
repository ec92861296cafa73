"""The WAL prefetcher of a recovery, driven the way PostgreSQL drives ``restore_command``:
``wal_fetch`` with the spool, one segment after the other, against a real file repository.
(Without a server: replay speed cannot be steered, a consumer loop can.)"""

from __future__ import annotations

import io
import time
from pathlib import Path

from pg_e2e import wait_for

from pitr.catalog.model import LogSegment
from pitr.catalog.store import CatalogStore
from pitr.engines.postgresql.archive import wal_fetch
from pitr.engines.postgresql.prefetch import Prefetcher
from pitr.storage.local import LocalStorage
from pitr.storage.transfer import Compression, upload

SEGMENT = 64 * 1024
STREAM = "00000001"


class SlowStorage(LocalStorage):
    """Opening the objects named in ``slow`` takes ``delay`` seconds (a slow repository)."""

    def __init__(self, root: str, slow: set[str], delay: float) -> None:
        super().__init__(root)
        self.slow = slow
        self.delay = delay

    def open(self, key: str) -> io.RawIOBase:
        if any(key.endswith(f"/{name}.zst") for name in self.slow):
            time.sleep(self.delay)
        return super().open(key)


def segments(store: CatalogStore, count: int) -> list[LogSegment]:
    found = []
    for n in range(1, count + 1):
        name = f"{STREAM}{0:08X}{n:08X}"
        data = bytes([n]) * SEGMENT
        key = store.layout.log_object(STREAM, name, ".zst")
        stored = upload(store.storage, key, io.BytesIO(data), Compression("zstd"))
        start = n * SEGMENT
        end = start + SEGMENT
        found.append(LogSegment(name, STREAM, "1", str(start), str(end), start, end, stored))
    return found


def test_replay_getting_ahead_does_not_stall_prefetching(tmp_path: Path) -> None:
    """Replay outruns the prefetcher on three slow segments (``restore_command`` fetches them
    from the repository itself); the prefetcher delivers them late, into a spool of three.
    Those files must not stay there for good: every later segment is found prefetched."""
    root = tmp_path / "repo"
    root.mkdir()
    plan = segments(CatalogStore(LocalStorage(str(root)), "main", "postgresql"), 12)
    slow = {seg.name for seg in plan[2:5]}
    store = CatalogStore(SlowStorage(str(root), slow, 0.4), "main", "postgresql")
    spool = tmp_path / "spool"
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    hits = []
    with Prefetcher(store.storage, plan, spool, ahead=3, workers=1) as prefetcher:
        for n, seg in enumerate(plan):
            staged = spool / seg.name
            if seg.name not in slow:
                wait_for(staged.exists, 10, f"{seg.name} to be prefetched")
            hits.append(staged.exists())
            dest = wal / "RECOVERYXLOG"
            assert wal_fetch(store, seg.name, dest, spool)
            assert dest.read_bytes() == bytes([n + 1]) * SEGMENT
    assert prefetcher.errors == []
    assert hits[:2] == [True, True]
    assert hits[5:] == [True] * 7
    assert sorted(p.name for p in spool.iterdir() if not p.name.startswith(".")) == []


def test_a_corrupt_segment_is_reported_and_fetched_again(tmp_path: Path) -> None:
    """A segment that does not verify is not put in the spool; restore_command then gets it
    from the repository itself, and the prefetcher names it."""
    root = tmp_path / "repo"
    root.mkdir()
    store = CatalogStore(LocalStorage(str(root)), "main", "postgresql")
    plan = segments(store, 4)
    bad = root / plan[1].object.key
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    spool = tmp_path / "spool"
    with Prefetcher(store.storage, plan, spool, ahead=8, workers=2) as prefetcher:
        wait_for((spool / plan[3].name).exists, 10, "the last segment")
        assert not (spool / plan[1].name).exists()
    assert [plan[1].object.key in e.message for e in prefetcher.errors] == [True]
