"""The instance lock against a real S3 server (moto): conditional create, read-back, release."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers import MotoServer

from pitr.commands.locks import InstanceLock
from pitr.config.settings import RepositorySettings
from pitr.errors import LockHeld
from pitr.storage import Storage, open_storage

KEY = "main/locks/instance.json"
HOST = socket.gethostname()
NOW = datetime.now(UTC).isoformat()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Storage:
    bucket = f"pitr-locks-{uuid.uuid4().hex[:10]}"
    moto_server.create_bucket(bucket)
    for var, value in moto_server.env().items():
        monkeypatch.setenv(var, value)
    return open_storage(
        RepositorySettings(
            url=f"s3://{bucket}/p",
            endpoint_url=moto_server.endpoint_url,
            region=moto_server.region,
            addressing="path",
            timeout=10,
        )
    )


def test_acquire_conflict_release(s3: Storage, tmp_path: Path) -> None:
    here, db2 = str(tmp_path / "here"), str(tmp_path / "db2")  # two hosts: two lock dirs
    with InstanceLock(s3, "main", here, "backup") as lock:
        assert json.loads(s3.get_bytes(KEY))["token"] == lock.token
        with pytest.raises(LockHeld, match=f"on {HOST}") as info:
            InstanceLock(s3, "main", db2, "expire", host="db2", pid=4242).__enter__()
        assert info.value.exit_code == 75
        assert json.loads(s3.get_bytes(KEY))["token"] == lock.token
    assert not s3.exists(KEY)
    with InstanceLock(s3, "main", db2, "expire", host="db2", pid=4242) as other:
        doc = json.loads(s3.get_bytes(KEY))
        assert (doc["host"], doc["pid"], doc["token"]) == ("db2", 4242, other.token)
    assert not s3.exists(KEY)


def test_dead_holder_on_this_host_is_taken_over(s3: Storage, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    doc = {"format": "1.0", "kind": "lock", "host": HOST, "pid": dead.pid, "command": "backup"}
    s3.put_bytes(KEY, json.dumps(doc | {"acquired": NOW, "token": "0" * 32}).encode())
    # Another host cannot tell whether that process lives: it never breaks the lock.
    with pytest.raises(LockHeld, match=f"pid {dead.pid} on {HOST}"):
        InstanceLock(s3, "main", str(tmp_path / "db2"), "backup", host="db2").__enter__()
    with InstanceLock(s3, "main", str(tmp_path / "locks"), "backup") as lock:
        assert json.loads(s3.get_bytes(KEY))["token"] == lock.token
    assert not s3.exists(KEY)
