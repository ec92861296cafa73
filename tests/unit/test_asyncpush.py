"""The asynchronous archive_command protocol: status files between archive_command and the
worker, failures reported once and retried when PostgreSQL asks again, nothing pushed twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitr.engines.postgresql import asyncpush
from pitr.errors import StorageUnavailable


class Worker:
    """``serve`` in a thread, with a push that can be told to fail."""

    def __init__(self, spool: Path, pg_wal: Path) -> None:
        self.pushed: list[str] = []
        self.fail: set[str] = set()
        self.spool = spool
        self.thread = threading.Thread(
            target=asyncpush.serve, args=(spool, pg_wal, self.push, 2), daemon=True
        )

    def start(self) -> None:
        """Start, and wait until it holds the worker lock (else wait_for starts a real one)."""
        self.thread.start()
        deadline = time.monotonic() + 5
        while not asyncpush._worker_running(self.spool):
            assert time.monotonic() < deadline, "the worker did not take its lock"
            time.sleep(0.01)

    def push(self, path: Path) -> None:
        if path.name in self.fail:
            self.fail.discard(path.name)
            raise StorageUnavailable("s3://bucket: unreachable (gave up after 1 s of retries)")
        self.pushed.append(path.name)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, Worker]]:
    monkeypatch.setattr(asyncpush, "IDLE_EXIT", 0.5)
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    spool = tmp_path / "spool"
    spool.mkdir()
    worker = Worker(spool, pg_wal)
    yield spool, pg_wal, worker
    worker.thread.join(timeout=10)


def ready(pg_wal: Path, name: str) -> Path:
    (pg_wal / name).write_bytes(b"wal")
    (pg_wal / "archive_status" / f"{name}.ready").touch()
    return pg_wal / name


def done(pg_wal: Path, name: str) -> None:
    """What PostgreSQL does once archive_command returned 0."""
    status = pg_wal / "archive_status"
    (status / f"{name}.ready").rename(status / f"{name}.done")


def test_archived_ahead_acknowledged_once(site: tuple[Path, Path, Worker]) -> None:
    spool, pg_wal, worker = site
    a, b = ready(pg_wal, "000000010000000000000001"), ready(pg_wal, "000000010000000000000002")
    worker.start()
    assert asyncpush.wait_for(spool, a, None, "main") == (0, f"{a.name} archived")
    done(pg_wal, a.name)
    assert asyncpush.wait_for(spool, b, None, "main")[0] == 0  # pushed ahead already
    done(pg_wal, b.name)
    worker.thread.join(timeout=10)
    assert sorted(worker.pushed) == [a.name, b.name]  # each exactly once
    assert not list(spool.glob("*.ok"))


def test_a_failure_is_reported_then_retried(site: tuple[Path, Path, Worker]) -> None:
    spool, pg_wal, worker = site
    c = ready(pg_wal, "000000010000000000000003")
    worker.fail.add(c.name)
    worker.start()
    code, message = asyncpush.wait_for(spool, c, None, "main")
    assert code == 5 and "unreachable" in message
    assert asyncpush.wait_for(spool, c, None, "main")[0] == 0  # PostgreSQL tries again
    done(pg_wal, c.name)
    worker.thread.join(timeout=10)
    assert worker.pushed == [c.name]


def test_a_second_worker_leaves(
    site: tuple[Path, Path, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, pg_wal, worker = site
    monkeypatch.setattr(asyncpush, "IDLE_EXIT", 3.0)  # the first outlives the second's wait
    ready(pg_wal, "000000010000000000000004")
    worker.start()
    asyncpush.wait_for(spool, pg_wal / "000000010000000000000004", None, "main")
    other: list[str] = []
    asyncpush.serve(spool, pg_wal, lambda p: other.append(p.name), 1)  # returns: lock is held
    assert other == []
    done(pg_wal, "000000010000000000000004")


def test_a_status_file_for_another_file_is_not_an_answer(
    site: tuple[Path, Path, Worker], tmp_path: Path
) -> None:
    """A ``.ok`` left by a worker serving another data directory (same instance and spool)
    must not acknowledge this segment: only the worker's own push does."""
    spool, pg_wal, worker = site
    e = ready(pg_wal, "000000010000000000000005")
    other = tmp_path / "other-pg_wal" / e.name
    other.parent.mkdir()
    other.write_bytes(b"wal")
    (spool / f"{e.name}.ok").write_text(asyncpush._identity(other))
    worker.start()
    assert asyncpush.wait_for(spool, e, None, "main") == (0, f"{e.name} archived")
    assert worker.pushed == [e.name]  # pushed, not answered from the stale file
    done(pg_wal, e.name)


def test_an_answer_lost_with_its_caller_is_pushed_again(
    site: tuple[Path, Path, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """archive_command took the ``.ok`` and died before answering: PostgreSQL asks again, and
    the worker, seeing the segment still ready, pushes it again instead of staying silent."""
    spool, pg_wal, worker = site
    monkeypatch.setattr(asyncpush, "REQUEUE_AFTER", 0.2)
    f = ready(pg_wal, "000000010000000000000006")
    worker.start()
    ok = spool / f"{f.name}.ok"
    deadline = time.monotonic() + 10
    while not ok.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ok.unlink()  # taken by an archive_command that then died
    assert asyncpush.wait_for(spool, f, None, "main") == (0, f"{f.name} archived")
    assert worker.pushed == [f.name, f.name]
    done(pg_wal, f.name)
