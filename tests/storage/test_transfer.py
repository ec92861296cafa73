"""The streaming pipeline over every driver: compress on the way in, verify on the way out."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from pitr.errors import VerificationFailed
from pitr.storage import Storage
from pitr.storage.transfer import Compression, StoredObject, download, upload, verify

from .conftest import DRIVERS

TEXTISH = b"".join(b"row %08d,some text that compresses,%d\n" % (i, i * 7) for i in range(200_000))


@pytest.mark.parametrize("repo_settings", DRIVERS, indirect=True)
@pytest.mark.parametrize("compression", [Compression("zstd", 3, 2), Compression("none")])
def test_round_trip_verified(storage: Storage, compression: Compression) -> None:
    stored = upload(storage, "t/obj", io.BytesIO(TEXTISH), compression, hash_raw=True)
    assert stored.raw_size == len(TEXTISH)
    assert stored.raw_sha256 == hashlib.sha256(TEXTISH).hexdigest()
    if compression.algorithm == "zstd":
        assert stored.size < len(TEXTISH) / 3
    out = io.BytesIO()
    assert download(storage, stored, out) == len(TEXTISH)
    assert out.getvalue() == TEXTISH
    assert StoredObject.from_dict(stored.to_dict()) == stored


@pytest.mark.parametrize("repo_settings", DRIVERS, indirect=True)
def test_corruption_is_detected(storage: Storage) -> None:
    stored = upload(storage, "t/obj", io.BytesIO(TEXTISH), Compression())
    data = bytearray(storage.get_bytes("t/obj"))
    data[len(data) // 2] ^= 0xFF
    storage.put_bytes("t/obj", bytes(data))
    with pytest.raises(VerificationFailed, match="t/obj"):
        verify(storage, stored)


@pytest.mark.parametrize("repo_settings", ["file"], indirect=True)
def test_a_file_of_known_size_is_compressed_whole(storage: Storage, tmp_path: Path) -> None:
    """A WAL segment's way (``size`` given, a file): one call from its memory map, the same
    single checksummed frame, raw size and sha256 as streamed; a file read partly already
    is streamed from where it stands."""
    import zstandard

    path = tmp_path / "seg"
    path.write_bytes(TEXTISH)
    with path.open("rb") as fh:
        whole = upload(storage, "t/whole", fh, Compression("zstd", 3, 1), hash_raw=True,
                       size=len(TEXTISH))  # fmt: skip
    streamed = upload(storage, "t/stream", io.BytesIO(TEXTISH), Compression("zstd", 3, 1),
                      hash_raw=True)  # fmt: skip
    assert (whole.raw_size, whole.raw_sha256) == (streamed.raw_size, streamed.raw_sha256)
    frame = storage.get_bytes("t/whole")
    assert zstandard.get_frame_parameters(frame).has_checksum
    assert zstandard.frame_content_size(frame) == len(TEXTISH)
    out = io.BytesIO()
    assert download(storage, whole, out) == len(TEXTISH) and out.getvalue() == TEXTISH
    with path.open("rb") as fh:
        fh.read(10)
        rest = upload(storage, "t/rest", fh, Compression("zstd", 3, 1), size=len(TEXTISH) - 10)
    assert rest.raw_size == len(TEXTISH) - 10


@pytest.mark.parametrize("repo_settings", ["file"], indirect=True)
def test_truncation_and_loss_are_detected(storage: Storage) -> None:
    stored = upload(storage, "t/obj", io.BytesIO(TEXTISH), Compression())
    data = storage.get_bytes("t/obj")
    storage.put_bytes("t/obj", data[: len(data) - 100])
    with pytest.raises(VerificationFailed, match="size"):
        verify(storage, stored)
    storage.delete("t/obj")
    with pytest.raises(VerificationFailed, match="missing"):
        verify(storage, stored)


@pytest.mark.parametrize("repo_settings", ["file"], indirect=True)
def test_a_2_gb_stream_moves_in_bounded_memory(storage: Storage, tmp_path: Path) -> None:
    """Peak RSS of a child process moving 2 GiB through zstd into the repository and back."""
    script = f"""
import sys
from pitr.storage.local import LocalStorage
from pitr.storage.transfer import Compression, upload, download

class Source:
    def __init__(self, size):
        self.left = size
        self.block = bytes(range(256)) * 4096 + b"%d"
    def read(self, n=-1):
        n = min(self.left, n if n > 0 else 1 << 20, len(self.block))
        self.left -= n
        return self.block[:n]

class Sink:
    def write(self, b):
        return len(b)

storage = LocalStorage({str(tmp_path / "rss")!r})
obj = upload(storage, "two-gb", Source(2 << 30), Compression("zstd", 3, 2))
assert obj.raw_size == 2 << 30, obj
assert download(storage, obj, Sink()) == 2 << 30
# VmHWM: this process's own peak. ru_maxrss would also count the peak of the process that
# spawned it (Linux carries it across exec), here pytest's, which grows with the suite.
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mb = int(done.stdout.strip()) / 1024
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"
    print(f"peak RSS moving 2 GiB: {peak_mb:.0f} MB")
