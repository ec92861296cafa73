"""The backup's tar stream, made as it is read: a real tar archive, whatever the read sizes,
with each file's size, mtime and CRC-32 recorded, a file that vanished left out and a file
that shrank padded to the size it had when opened; extracted with blocks left out (a later
backup has them), the rest is written at its offsets, the file at its exact length."""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path

import pytest

from pitr.engines.postgresql.files import TarStream, extract_tar, scan


def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "base" / "1").mkdir(parents=True)
    (root / "global").mkdir()
    (root / "PG_VERSION").write_text("15\n")
    (root / "base" / "1" / "1259").write_bytes(os.urandom(3 * (1 << 20) + 123))
    (root / "global" / "pg_control").write_bytes(b"\x01" * 8192)
    (root / "postmaster.pid").write_text("42\n")  # never backed up
    return root


@pytest.mark.parametrize("read_size", [1, 511, 4096, 1 << 20, 5 << 20])
def test_a_real_tar_whatever_the_read_size(tmp_path: Path, read_size: int) -> None:
    root = data_dir(tmp_path)
    files, _ = scan(root)
    stream = TarStream(files)
    out = io.BytesIO()
    while chunk := stream.read(read_size):
        assert len(chunk) <= read_size
        out.write(chunk)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        names = tar.getnames()
        data = tar.extractfile("base/1/1259")
        assert data is not None and data.read() == (root / "base/1/1259").read_bytes()
    assert "postmaster.pid" not in names and "PG_VERSION" in names
    sent = {s.name: s for s in stream.sent}
    body = (root / "base/1/1259").read_bytes()
    assert sent["base/1/1259"].size == len(body)
    assert sent["base/1/1259"].crc32 == zlib.crc32(body)
    assert sent["global/pg_control"].mtime_ns == (root / "global/pg_control").stat().st_mtime_ns


def test_vanished_and_shrunk_files(tmp_path: Path) -> None:
    root = data_dir(tmp_path)
    files, _ = scan(root)
    gone = root / "PG_VERSION"
    gone.unlink()  # dropped after the scan
    stream = TarStream(files)
    shrunk = root / "base/1/1259"
    original = shrunk.read_bytes()
    pieces = [stream.read()]
    while b"base/1/1259" not in pieces[-1]:  # its header: the file is open now
        pieces.append(stream.read())
    with shrunk.open("r+b") as fh:
        fh.truncate(1000)  # shrinks while it is being sent
    pieces += iter(stream.read, b"")
    dest = tmp_path / "restored"
    dest.mkdir()
    extract_tar(io.BytesIO(b"".join(pieces)), dest, tablespaces={}, owner=None)
    assert not (dest / "PG_VERSION").exists()
    assert "PG_VERSION" not in [s.name for s in stream.sent]
    restored = (dest / "base/1/1259").read_bytes()
    assert len(restored) == len(original)  # the size it had when opened, zero-padded
    assert restored == original[:1000] + bytes(len(original) - 1000)


def test_extract_leaves_holes_where_told(tmp_path: Path) -> None:
    body = os.urandom(5 * 8192 + 100)  # a last, partial block
    info = tarfile.TarInfo("base/1/16384")
    info.size = len(body)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.addfile(info, io.BytesIO(body))
    for holes in ([[1, 2]], [[4, 2]], [[0, 6]]):
        dest = tmp_path / str(holes)
        archive.seek(0)
        extract_tar(archive, dest, tablespaces={}, owner=None,
                    expected={"base/1/16384": (len(body), zlib.crc32(body))},  # all of it read
                    holes={"base/1/16384": holes}, block=8192)  # fmt: skip
        got = (dest / "base/1/16384").read_bytes()
        first, count = holes[0]
        gap = slice(first * 8192, (first + count) * 8192)
        kept = bytearray(body)
        kept[gap] = bytes(len(kept[gap]))
        assert got == bytes(kept)  # exact length, the holes zero (sparse), the rest in place
