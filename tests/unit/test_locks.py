"""The instance lock against a real ``file://`` repository, real flocks and real processes."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pitr.commands.locks import WAIT_HINT, InstanceLock
from pitr.domain.streams import Readable
from pitr.errors import (
    FormatError,
    Interrupted,
    LockHeld,
    PreconditionFailed,
    RepositoryError,
)
from pitr.storage.base import PutResult
from pitr.storage.local import LocalStorage

KEY = "main/locks/instance.json"
HOST = socket.gethostname()

CHILD = """
import signal, sys, time
from pitr.errors import Interrupted
from pitr.commands.locks import InstanceLock
from pitr.storage.local import LocalStorage

def on_sigterm(signum, frame):  # what pitr.cli installs
    raise Interrupted(f"interrupted by signal {signum}")

signal.signal(signal.SIGTERM, on_sigterm)
with InstanceLock(LocalStorage(sys.argv[1]), "main", sys.argv[2], "backup --child"):
    print("READY", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    return LocalStorage(str(tmp_path / "repo"))


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "locks")


@pytest.fixture
def child(repo: LocalStorage, lock_dir: str) -> Iterator[subprocess.Popen[str]]:
    """A separate python process holding the lock for ``main`` until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(repo.root), lock_dir],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    yield proc
    proc.kill()
    proc.wait()


def lock_doc(host: str, pid: int, acquired: datetime, token: str = "f" * 32) -> bytes:
    doc = {"format": "1.0", "kind": "lock", "host": host, "pid": pid, "command": "backup"}
    return json.dumps(doc | {"acquired": acquired.isoformat(), "token": token}).encode()


def test_acquire_and_release(repo: LocalStorage, lock_dir: str) -> None:
    with InstanceLock(repo, "main", lock_dir, "backup --full") as lock:
        doc = json.loads(repo.get_bytes(KEY))
        assert doc["token"] == lock.token
        assert (doc["format"], doc["kind"], doc["command"]) == ("1.0", "lock", "backup --full")
        assert (doc["host"], doc["pid"]) == (HOST, os.getpid())
        assert datetime.fromisoformat(doc["acquired"]).utcoffset() == timedelta(0)
        local = json.loads(Path(lock_dir, "main.lock").read_text())
        assert local["pid"] == os.getpid() and local["command"] == "backup --full"
    assert not repo.exists(KEY)
    assert Path(lock_dir, "main.lock").exists()
    assert Path(lock_dir).stat().st_mode & 0o777 == 0o700


def test_second_lock_in_same_process_fails_at_once(repo: LocalStorage, lock_dir: str) -> None:
    with InstanceLock(repo, "main", lock_dir, "backup"):
        start = time.monotonic()
        with pytest.raises(LockHeld) as info, InstanceLock(repo, "main", lock_dir, "expire"):
            pass
        assert time.monotonic() - start < 0.3
        assert repo.exists(KEY)  # the loser did not touch the winner's object
    err = info.value
    assert err.exit_code == 75
    assert "'main'" in err.message and f"pid {os.getpid()} on {HOST}" in err.message
    assert "'backup'" in err.message and " since 20" in err.message
    assert err.hint == WAIT_HINT


def test_wait_retries_then_gives_up(repo: LocalStorage, lock_dir: str) -> None:
    with InstanceLock(repo, "main", lock_dir, "backup"):
        start = time.monotonic()
        with pytest.raises(LockHeld), InstanceLock(repo, "main", lock_dir, "expire", wait=1.2):
            pass
        assert 1.2 <= time.monotonic() - start < 1.6


def test_wait_succeeds_once_the_holder_finishes(repo: LocalStorage, lock_dir: str) -> None:
    first = InstanceLock(repo, "main", lock_dir, "backup").__enter__()
    releaser = threading.Timer(0.7, first.__exit__, (None, None, None))
    releaser.start()
    start = time.monotonic()
    with InstanceLock(repo, "main", lock_dir, "expire", wait=5) as second:
        assert json.loads(repo.get_bytes(KEY))["token"] == second.token
    assert 0.7 <= time.monotonic() - start < 1.5
    releaser.join()


def test_child_process_holds_then_dies(
    repo: LocalStorage,
    lock_dir: str,
    child: subprocess.Popen[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(LockHeld, match=f"pid {child.pid} on {HOST}"):
        InstanceLock(repo, "main", lock_dir, "backup").__enter__()
    child.kill()
    child.wait()  # a zombie still answers kill(pid, 0)
    # The kernel dropped the flock; the repository object stays behind, stale.
    assert json.loads(repo.get_bytes(KEY))["pid"] == child.pid
    with (
        caplog.at_level(logging.WARNING, "pitr.locks"),
        InstanceLock(repo, "main", lock_dir, "backup") as lock,
    ):
        assert json.loads(repo.get_bytes(KEY))["token"] == lock.token
    assert f"pid {child.pid} on {HOST}" in caplog.text and "taking over" in caplog.text
    assert not repo.exists(KEY)


def test_sigterm_in_child_releases(
    repo: LocalStorage, lock_dir: str, child: subprocess.Popen[str]
) -> None:
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 1  # the Interrupted traceback
    assert not repo.exists(KEY)
    with InstanceLock(repo, "main", lock_dir, "backup"):
        pass


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), Interrupted("sig")])
def test_exception_inside_block_releases(
    repo: LocalStorage, lock_dir: str, exc: BaseException
) -> None:
    with pytest.raises(type(exc)), InstanceLock(repo, "main", lock_dir, "backup"):
        raise exc
    assert not repo.exists(KEY)
    with InstanceLock(repo, "main", lock_dir, "backup"):
        pass


def test_other_host_is_never_taken_over(repo: LocalStorage, lock_dir: str) -> None:
    acquired = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    repo.put_bytes(KEY, lock_doc("db2", 4242, acquired))

    def attempt(now: datetime) -> LockHeld:
        with pytest.raises(LockHeld) as info:
            InstanceLock(repo, "main", lock_dir, "backup", clock=lambda: now).__enter__()
        return info.value

    recent = attempt(acquired + timedelta(hours=5))
    assert "pid 4242 on db2" in recent.message and "2026-03-04T02:00:00+00:00" in recent.message
    assert recent.hint == WAIT_HINT
    old = attempt(acquired + timedelta(hours=7))
    assert old.hint is not None and "if host db2 is gone" in old.hint and KEY in old.hint
    assert repo.get_bytes(KEY) == lock_doc("db2", 4242, acquired)


def test_stale_age_is_configurable(repo: LocalStorage, lock_dir: str) -> None:
    acquired = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    repo.put_bytes(KEY, lock_doc("db2", 4242, acquired))
    now = acquired + timedelta(minutes=90)
    for stale_after, stale in ((3600, True), (7200, False)):
        lock = InstanceLock(repo, "main", lock_dir, "b", stale_after=stale_after, clock=lambda: now)
        with pytest.raises(LockHeld) as info:
            lock.__enter__()
        hint = info.value.hint or ""
        assert hint.startswith("held for 1.5 h; if host db2 is gone") == stale
        assert (hint == WAIT_HINT) != stale


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_unreaped_zombie_holder_is_taken_over(
    repo: LocalStorage, lock_dir: str, child: subprocess.Popen[str]
) -> None:
    os.kill(child.pid, signal.SIGKILL)  # killed and, until the fixture's teardown, never reaped
    deadline = time.monotonic() + 10
    while proc_state(child.pid) != "Z":
        assert time.monotonic() < deadline, "the child did not die"
        time.sleep(0.01)
    os.kill(child.pid, 0)  # a zombie answers as if alive: liveness proves nothing
    with InstanceLock(repo, "main", lock_dir, "backup") as lock:
        assert json.loads(repo.get_bytes(KEY))["token"] == lock.token
    assert proc_state(child.pid) == "Z" and not repo.exists(KEY)


def test_this_hosts_object_naming_a_live_unrelated_pid_is_taken_over(
    repo: LocalStorage, lock_dir: str
) -> None:
    """After a reboot the recorded pid can belong to any live process (here: our parent)."""
    doc = json.loads(lock_doc(HOST, os.getppid(), datetime.now(UTC)))
    repo.put_bytes(KEY, json.dumps(doc | {"lock_file": str(Path(lock_dir, "main.lock"))}).encode())
    with InstanceLock(repo, "main", lock_dir, "backup") as lock:
        assert json.loads(repo.get_bytes(KEY))["token"] == lock.token
    repo.put_bytes(KEY, lock_doc(HOST, 1, datetime.now(UTC)))  # older documents: no lock_file
    with InstanceLock(repo, "main", lock_dir, "backup"):
        assert json.loads(repo.get_bytes(KEY))["pid"] == os.getpid()


def test_another_lock_dir_of_this_host_is_probed(
    repo: LocalStorage, lock_dir: str, tmp_path: Path, child: subprocess.Popen[str]
) -> None:
    """A run of another OS user (its own lock_dir) is refused while it holds its lock file,
    taken over once that file's flock is free."""
    other_dir = tmp_path / "other-user"
    with pytest.raises(LockHeld) as info:
        InstanceLock(repo, "main", str(other_dir), "backup").__enter__()
    assert f"pid {child.pid} on {HOST}" in info.value.message
    assert info.value.hint and str(Path(lock_dir, "main.lock")) in info.value.hint
    child.kill()
    child.wait()
    with InstanceLock(repo, "main", str(other_dir), "backup") as lock:
        assert json.loads(repo.get_bytes(KEY))["token"] == lock.token


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"kind": "lock"}',
        json.dumps({"kind": "lock", "host": "h", "pid": "12", "command": "c"}).encode(),
        lock_doc(HOST, 0, datetime.now(UTC)),
        lock_doc(HOST, 12, datetime.now(UTC)).replace(b'"lock"', b'"manifest"'),
        lock_doc(HOST, 12, datetime.now(UTC)).replace(b"+00:00", b"bad"),
    ],
)
def test_corrupt_object(repo: LocalStorage, lock_dir: str, body: bytes) -> None:
    repo.put_bytes(KEY, body)
    with pytest.raises(FormatError, match=KEY) as info:
        InstanceLock(repo, "main", lock_dir, "backup").__enter__()
    assert info.value.exit_code == 3 and info.value.hint and "delete" in info.value.hint
    with open(Path(lock_dir, "main.lock"), "rb") as f:  # the local lock was given back
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_different_instances_do_not_conflict(repo: LocalStorage, lock_dir: str) -> None:
    with (
        InstanceLock(repo, "main", lock_dir, "backup"),
        InstanceLock(repo, "other", lock_dir, "backup"),
    ):
        assert repo.exists(KEY) and repo.exists("other/locks/instance.json")
    assert not repo.exists(KEY) and not repo.exists("other/locks/instance.json")


def test_release_leaves_an_object_that_is_no_longer_ours(
    repo: LocalStorage, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = lock_doc("db2", 7, datetime.now(UTC))
    with caplog.at_level(logging.WARNING, "pitr.locks"), InstanceLock(repo, "main", lock_dir, "b"):
        repo.put_bytes(KEY, foreign)  # an operator broke our lock; db2 took it
    assert repo.get_bytes(KEY) == foreign
    assert "no longer ours" in caplog.text


def test_unusable_lock_dir(repo: LocalStorage, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PreconditionFailed, match="lock file") as info:
        InstanceLock(repo, "main", str(tmp_path / "file" / "locks"), "backup").__enter__()
    assert info.value.exit_code == 6
    assert not repo.exists(KEY)


def break_repository(repo: LocalStorage) -> None:
    """Make every later read of the lock object fail with a storage error."""
    repo.delete(KEY)  # also prunes the emptied directories
    (repo.root / "main").mkdir()
    (repo.root / "main" / "locks").write_text("")


def test_release_failure_keeps_the_original_error(
    repo: LocalStorage, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, "pitr.locks"),
        pytest.raises(Interrupted),
        InstanceLock(repo, "main", lock_dir, "backup"),
    ):
        break_repository(repo)
        raise Interrupted("interrupted by signal 15")
    assert "could not release the lock object" in caplog.text
    with pytest.raises(RepositoryError), InstanceLock(repo, "main", lock_dir, "backup"):
        break_repository(repo)  # no error in flight: the release failure is reported
    with open(Path(lock_dir, "main.lock"), "rb") as f:  # the local lock was given back
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


class RacingStorage(LocalStorage):
    """Swift's behaviour when two creators race: both "win", the last write stays."""

    supports_create_if_absent = False

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        result = super().put(key, source, if_absent=if_absent)
        super().put(key, io.BytesIO(lock_doc("db2", 7, datetime.now(UTC))))
        return result


def test_lost_race_backs_off(tmp_path: Path, lock_dir: str) -> None:
    racing = RacingStorage(str(tmp_path / "repo"))
    with pytest.raises(LockHeld, match="pid 7 on db2"):
        InstanceLock(racing, "main", lock_dir, "backup").__enter__()
    assert json.loads(racing.get_bytes(KEY))["host"] == "db2"
