"""Indexing a growing binlog from where its last index ended (``binlog.resume``): the same
index as reading the whole file, on MariaDB and MySQL binlogs, cut after each transaction; and
the server ids of a binlog's event headers (MySQL's applier replay)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pitr.engines.mysql.applier import event_server_ids
from pitr.engines.mysql.binlog import BinlogIndex, index_binlog_file
from pitr.engines.mysql.binlog.resume import index_continued
from pitr.errors import ToolFailed

V = Path(__file__).resolve().parent.parent / "vectors"
FILES = [
    V / "generated" / "mysql-bin.000002",
    V / "generated" / "mysql-bin.000008.in-use",
    V / "mysql-binlog-connector-rust" / "mysql-bin.000057",
    V / "mysql-binlog-connector-rust" / "mysql-bin.000080",
    V / "mysql-binlog-connector-java" / "mysql-bin.checksum-none",
]


def prefix_of(path: Path, end: int, tmp_path: Path) -> BinlogIndex:
    """The index the follower keeps: of the file's first ``end`` bytes (a transaction end)."""
    cut = tmp_path / path.name
    cut.write_bytes(path.read_bytes()[:end])
    index = index_binlog_file(cut)
    return replace(index, size=end, truncated=False, valid_end=end)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_continued_equals_whole(path: Path, tmp_path: Path) -> None:
    whole = index_binlog_file(path)
    assert len(whole.transactions) >= 2
    cuts = whole.transactions[:-1]
    for txn in cuts[:: max(1, len(cuts) // 8)]:  # 8 cuts or so
        before = prefix_of(path, txn.end, tmp_path)
        assert index_continued(path, before) == whole


def test_a_torn_tail_and_a_shorter_file(tmp_path: Path) -> None:
    path = FILES[0]
    data = path.read_bytes()
    whole = index_binlog_file(path)
    first, last = whole.transactions[0], whole.transactions[-1]
    grown = tmp_path / "grown" / path.name
    grown.parent.mkdir()
    grown.write_bytes(data[: last.start + 30])  # the last transaction torn
    expected = index_binlog_file(grown)
    assert expected.truncated
    assert index_continued(grown, prefix_of(path, first.end, tmp_path)) == expected
    shorter = prefix_of(path, last.end, tmp_path)  # longer than the file: read it whole
    assert index_continued(grown, shorter) == expected


def test_the_server_ids_of_a_binlog_from_its_event_headers(tmp_path: Path) -> None:
    """What MySQL's applier replay avoids as its own server id (``applier.event_server_ids``)."""
    path = FILES[0]  # written by server 1, with transactions of server_id 7
    assert event_server_ids(path) == {1, 7} == set(index_binlog_file(path).server_ids)
    cut = tmp_path / "cut"
    cut.write_bytes(path.read_bytes()[: index_binlog_file(path).transactions[0].end])
    assert event_server_ids(cut) == {1}
    cut.write_bytes(b"\x1f\x8b" + path.read_bytes()[2:])
    with pytest.raises(ToolFailed, match="not a binlog"):
        event_server_ids(cut)
