"""Pure pieces of the storage layer: part sizes, keys, readers."""

from __future__ import annotations

import io

import pytest

from pitr.errors import RepositoryError
from pitr.storage.base import (
    FIRST_PART_SIZE,
    MAX_PART_SIZE,
    ChunkReader,
    part_size,
    read_full,
    validate_key,
)
from pitr.storage.swift import SEGMENTS_PER_SIZE_STEP

TB = 10**12


def test_part_sizes_reach_5_tb_within_s3_part_limit() -> None:
    sizes = [part_size(i) for i in range(10_000)]
    assert sizes[0] == FIRST_PART_SIZE
    assert sizes == sorted(sizes)
    assert max(sizes) <= MAX_PART_SIZE
    assert sum(sizes) > 5 * TB
    # Small streams keep small parts: the first 8 GB use 8 MiB parts.
    assert sum(sizes[:1000]) == 1000 * FIRST_PART_SIZE


def test_swift_segment_sizes_fit_the_manifest_limit() -> None:
    sizes = [part_size(i, step=SEGMENTS_PER_SIZE_STEP) for i in range(1000)]
    assert sum(sizes) > 500 * 10**9  # half a terabyte in Swift's default 1000 segments


@pytest.mark.parametrize("key", ["a", "a/b", "with space/ü", ".pitr-check/x"])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "./a", "a/../b", "a/..", "x\x00"])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(RepositoryError):
        validate_key(key)


def test_read_full_loops_over_short_reads() -> None:
    class Short(io.RawIOBase):
        def __init__(self) -> None:
            self.data = b"0123456789"

        def read(self, n: int = -1, /) -> bytes:
            k = min(3, n)
            chunk, self.data = self.data[:k], self.data[k:]
            return chunk

    source = Short()
    assert read_full(source, 7) == b"0123456"
    assert read_full(source, 7) == b"789"
    assert read_full(source, 7) == b""


def test_chunk_reader_reassembles_and_closes() -> None:
    closed = []
    reader = ChunkReader(iter([b"abc", b"", b"defgh", b"i"]), close=lambda: closed.append(1))
    assert reader.read(2) == b"ab"
    assert reader.read(100) == b"c"
    assert reader.read() == b"defghi"
    assert reader.read(1) == b""
    reader.close()
    reader.close()
    assert closed == [1]
