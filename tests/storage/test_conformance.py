"""One conformance suite, run over every driver against real backends (file, moto S3, Swift)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pitr.config.settings import RepositorySettings
from pitr.errors import ObjectExists, ObjectNotFound, RepositoryError
from pitr.storage import Storage
from pitr.storage.base import part_size

from .conftest import DRIVERS

pytestmark = pytest.mark.parametrize("repo_settings", DRIVERS, indirect=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PatternReader:
    """A deterministic, incompressible-enough stream of ``size`` bytes, read in odd sizes."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = hashlib.sha512(b"pitr").digest() * 16384  # 1 MiB
        self.hash = hashlib.sha256()
        self.offset = 0

    def read(self, n: int = -1, /) -> bytes:
        n = min(self.remaining, n if n > 0 else 1 << 20, 300_001)
        start = self.offset % len(self.block)
        chunk = (self.block[start:] + self.block)[:n]
        self.offset += n
        self.remaining -= n
        self.hash.update(chunk)
        return chunk


@pytest.mark.parametrize("size", [0, 1, 1000])
def test_small_round_trip(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    result = storage.put_bytes("small/object", data)
    assert (result.size, result.sha256) == (size, sha(data))
    assert storage.get_bytes("small/object") == data
    assert storage.stat("small/object").size == size


def test_100_mb_round_trip(storage: Storage) -> None:
    size = 100 * 1024 * 1024
    source = PatternReader(size)
    result = storage.put("big/object.bin", source)
    assert result.size == size
    assert result.sha256 == source.hash.hexdigest()
    assert size > part_size(0)  # exercises multipart / static large objects
    readback = hashlib.sha256()
    total = 0
    with storage.open("big/object.bin") as stream:
        while chunk := stream.read(1 << 20):
            readback.update(chunk)
            total += len(chunk)
    assert (total, readback.hexdigest()) == (size, result.sha256)
    assert [(i.key, i.size) for i in storage.list("big/")] == [("big/object.bin", size)]
    storage.delete("big/object.bin")
    assert list(storage.list("big/")) == []


def test_listing_2500_keys_paginates_in_order(storage: Storage) -> None:
    keys = [f"many/{i:05d}" for i in range(2500)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: storage.put_bytes(k, k.encode()), keys))
    listed = list(storage.list("many/"))
    assert [i.key for i in listed] == keys
    assert all(i.size == len(i.key) for i in listed)


def test_nested_prefixes(storage: Storage) -> None:
    keys = ["a/b/c", "a/b/d/e", "a/bc", "a-b", "a/b.json", "ab"]
    for key in keys:
        storage.put_bytes(key, b"x")
    assert [i.key for i in storage.list("")] == sorted(keys)
    assert [i.key for i in storage.list("a/")] == ["a/b.json", "a/b/c", "a/b/d/e", "a/bc"]
    assert [i.key for i in storage.list("a/b")] == ["a/b.json", "a/b/c", "a/b/d/e", "a/bc"]
    assert [i.key for i in storage.list("a/b/")] == ["a/b/c", "a/b/d/e"]
    assert [i.key for i in storage.list("a/b/d")] == ["a/b/d/e"]
    assert list(storage.list("nothing/")) == []


def test_keys_with_spaces_and_non_ascii(storage: Storage) -> None:
    keys = ["with space/file name.txt", "ünïcödé/数据/ファイル", "emoji/🐘"]
    for key in keys:
        storage.put_bytes(key, key.encode())
    for key in keys:
        assert storage.get_bytes(key) == key.encode()
    assert sorted(i.key for i in storage.list("")) == sorted(keys)


def test_missing_key(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound) as err:
        storage.get_bytes("no/such/key")
    assert err.value.key == "no/such/key"
    with pytest.raises(ObjectNotFound):
        storage.stat("no/such/key")
    assert not storage.exists("no/such/key")


def test_delete_twice(storage: Storage) -> None:
    storage.put_bytes("gone/soon", b"data")
    storage.delete("gone/soon")
    storage.delete("gone/soon")
    assert not storage.exists("gone/soon")


def test_overwrite_replaces(storage: Storage) -> None:
    storage.put_bytes("doc", b"first")
    storage.put_bytes("doc", b"second version")
    assert storage.get_bytes("doc") == b"second version"


def test_create_if_absent_refuses_a_second_writer(storage: Storage) -> None:
    storage.put_bytes("manifest.json", b"one", if_absent=True)
    with pytest.raises(ObjectExists):
        storage.put_bytes("manifest.json", b"two", if_absent=True)
    assert storage.get_bytes("manifest.json") == b"one"


def test_create_if_absent_race_has_one_winner(storage: Storage) -> None:
    def attempt(i: int) -> bool:
        try:
            storage.put_bytes("race.json", str(i).encode(), if_absent=True)
        except ObjectExists:
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        wins = list(pool.map(attempt, range(6)))
    winners = {str(i).encode() for i, won in enumerate(wins) if won}
    if storage.supports_create_if_absent:
        assert len(winners) == 1
    else:  # Swift: concurrent writers may both land, but the object is one writer's, whole
        assert len(winners) >= 1
    assert storage.get_bytes("race.json") in winners


class _Interloper(io.BytesIO):
    """A large source that, once its first part has been read, lets another writer create
    the same key: the write in progress must then be refused, not replace it."""

    def __init__(self, storage: Storage, key: str, data: bytes) -> None:
        super().__init__(data)
        self.storage, self.key, self.done = storage, key, False

    def read(self, n: int | None = -1, /) -> bytes:
        if self.tell() >= part_size(0) and not self.done:
            self.done = True
            self.storage.put_bytes(self.key, b"the other writer", if_absent=True)
        return super().read(n)


def test_create_if_absent_refuses_when_another_writer_wins_during_a_large_put(
    storage: Storage,
) -> None:
    """Checked when the object is committed, not only before it is sent (S3: the multipart
    upload's completion is conditional too)."""
    source = _Interloper(storage, "large", bytes(3 * part_size(0)))
    if storage.supports_create_if_absent:
        with pytest.raises(ObjectExists):
            storage.put("large", source, if_absent=True)
        assert storage.get_bytes("large") == b"the other writer"
    else:  # Swift: the later writer may land, but whole
        with contextlib.suppress(ObjectExists):
            storage.put("large", source, if_absent=True)
        assert storage.stat("large").size in (16, 3 * part_size(0))
    assert source.done


def test_concurrent_writers_on_different_keys(storage: Storage) -> None:
    payloads = {f"concurrent/{i}": os.urandom(50_000 + i) for i in range(16)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda kv: storage.put_bytes(*kv), payloads.items()))
    assert {r.key: r.sha256 for r in results} == {k: sha(v) for k, v in payloads.items()}
    for key, data in payloads.items():
        assert storage.get_bytes(key) == data


def test_invalid_keys_are_refused(storage: Storage) -> None:
    for key in ["", "/abs", "a//b", "a/../b", "trailing/", "nul\x00"]:
        with pytest.raises(RepositoryError):
            storage.put_bytes(key, b"x")


def test_writer_killed_mid_upload_leaves_no_visible_object(
    storage: Storage, repo_settings: RepositorySettings
) -> None:
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("slow_writer.py")), "killed/object"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(dataclasses.asdict(repo_settings)).encode())
    child.stdin.close()
    try:
        assert child.stdout.readline().strip() == b"STREAMING"
        time.sleep(0.5)  # let the first parts land
    finally:
        child.kill()
        child.wait()
    assert list(storage.list("killed/")) == []
    assert not storage.exists("killed/object")
    # The key is still writable afterwards.
    storage.put_bytes("killed/object", b"ok", if_absent=True)
    assert storage.get_bytes("killed/object") == b"ok"


def test_stream_put_with_short_reads(storage: Storage) -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = memoryview(data)

        def read(self, n: int = -1, /) -> bytes:
            chunk, self.data = self.data[:7], self.data[7:]
            return bytes(chunk)

    data = os.urandom(10_000)
    assert storage.put("trickle", Trickle(data)).sha256 == sha(data)
    assert storage.get_bytes("trickle") == data


def test_listing_starts_after_a_key(storage: Storage) -> None:
    keys = ["logs/1/a", "logs/1/b", "logs/1/c/d", "logs/1/e", "logs/2/a", "other"]
    for key in keys:
        storage.put_bytes(key, b"x")
    assert [i.key for i in storage.list("logs/", start_after="logs/1/b")] == [
        "logs/1/c/d",
        "logs/1/e",
        "logs/2/a",
    ]
    assert [i.key for i in storage.list("logs/1/", start_after="logs/1/c")] == [
        "logs/1/c/d",
        "logs/1/e",
    ]
    assert [i.key for i in storage.list("", start_after="logs/2/a")] == ["other"]
    assert list(storage.list("logs/", start_after="zzz")) == []


def test_list_prefixes_one_level_down(storage: Storage) -> None:
    for key in ["logs/00000001/a", "logs/00000001/b", "logs/00000002/x/y", "logs/file", "z/q"]:
        storage.put_bytes(key, b"x")
    assert storage.list_prefixes("logs/") == ("logs/00000001/", "logs/00000002/")
    assert storage.list_prefixes("") == ("logs/", "z/")
    assert storage.list_prefixes("logs/00000002/") == ("logs/00000002/x/",)
    assert storage.list_prefixes("nothing/") == ()
