"""The pure parts of the MariaDB/MySQL engine: the files mariadb-backup and xtrabackup write
(both binlog info names, MySQL GTID sets over several lines), stream assignment of binlogs
(names repeat; identity is the head), catalog documents of a real binlog, option files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pitr.catalog.model import Backup
from pitr.config.settings import InstanceSettings
from pitr.domain.positions import key_of
from pitr.engines.mysql.binlog import index_binlog_file
from pitr.engines.mysql.server import MyServer
from pitr.engines.mysql.streams import Head, Known, assign_stream, head_of, segment_document
from pitr.engines.mysql.xtrainfo import (
    binlog_position,
    parse_binlog_info,
    parse_checkpoints,
    parse_info_binlog_pos,
    read_checkpoints,
)
from pitr.errors import FormatError, UsageError
from pitr.storage.transfer import StoredObject

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
T = datetime(2026, 3, 1, tzinfo=UTC)
VECTORS = Path(__file__).parent.parent / "vectors"


def test_checkpoints() -> None:
    text = "backup_type = incremental\nfrom_lsn = 44848\nto_lsn = 53196\nlast_lsn = 53210\n"
    cp = parse_checkpoints(text)
    assert (cp.backup_type, cp.from_lsn, cp.to_lsn, cp.last_lsn) == (
        "incremental", 44848, 53196, 53210,
    )  # fmt: skip
    with pytest.raises(FormatError, match="to_lsn"):
        parse_checkpoints("backup_type = full\nfrom_lsn = 0\n")
    with pytest.raises(FormatError, match="key = value"):
        parse_checkpoints("garbage")


def test_binlog_info_mariadb_and_mysql() -> None:
    pos = parse_binlog_info("mysql-bin.000003\t1234\t0-1-42,1-2-7\n")
    assert (pos.file, pos.position, pos.gtids, pos.text) == (
        "mysql-bin.000003", 1234, "0-1-42,1-2-7", "mysql-bin.000003:1234",
    )  # fmt: skip
    mysql = parse_binlog_info(f"binlog.000007\t157\t{UUID}:1-5,\n{UUID.replace('3e', '4f')}:1-3\n")
    assert mysql.gtids == f"{UUID}:1-5,{UUID.replace('3e', '4f')}:1-3"
    assert parse_binlog_info("binlog.000001\t4\n").gtids == ""
    with pytest.raises(FormatError):
        parse_binlog_info("binlog.000001 four")


def test_info_binlog_pos() -> None:
    text = (
        "tool_name = mariadb-backup\nbinlog_pos = filename 'mysql-bin.000001', position '872', "
        "GTID of the last change '0-1-3'\ninnodb_to_lsn = 44848\n"
    )
    pos = parse_info_binlog_pos(text)
    assert pos is not None and (pos.file, pos.position, pos.gtids) == (
        "mysql-bin.000001", 872, "0-1-3",
    )  # fmt: skip
    assert parse_info_binlog_pos("tool_name = xtrabackup\n") is None


@pytest.mark.parametrize("name", ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"])
def test_either_binlog_info_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "xtrabackup_info").write_text("binlog_pos = filename 'old.000001', position '4'\n")
    assert binlog_position(tmp_path) is not None
    (tmp_path / name).write_text("mysql-bin.000009\t999\t0-1-5\n")
    pos = binlog_position(tmp_path)
    assert pos is not None and pos.text == "mysql-bin.000009:999"


@pytest.mark.parametrize("name", ["xtrabackup_checkpoints", "mariadb_backup_checkpoints"])
def test_either_checkpoints_name(tmp_path: Path, name: str) -> None:
    """MariaDB 11 names its files mariadb_backup_*; 10.11 and xtrabackup xtrabackup_*."""
    with pytest.raises(FormatError, match="mariadb_backup_checkpoints: missing"):
        read_checkpoints(tmp_path)
    (tmp_path / name).write_text("backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 77\n")
    assert read_checkpoints(tmp_path).to_lsn == 77


# -- streams ----------------------------------------------------------------------------------


def known(stream: str, n: int, before: str, after: str, system: str = "1") -> Known:
    return Known(stream, f"mysql-bin.{n:06d}", system, before, after, 1000, T)


def head(n: int, before: str, system: str = "1", created: datetime = T) -> Head:
    return Head(f"mysql-bin.{n:06d}", system, int(system), before, created)


CHAIN = [known("S", 1, "", "0-1-3"), known("S", 2, "0-1-3", "0-1-6")]


def test_a_continuing_file_joins_its_stream() -> None:
    assert assign_stream("mariadb", CHAIN, [], head(3, "0-1-6"), 500) == ("S", False)


def test_an_archived_file_is_recognised_by_its_head() -> None:
    assert assign_stream("mariadb", CHAIN, [], head(2, "0-1-3"), 1000) == ("S", True)
    assert assign_stream("mariadb", CHAIN, [], head(2, "0-1-3"), None) == ("S", False)


def test_after_reset_master_the_same_names_start_a_new_stream() -> None:
    again = head(1, "", created=datetime(2026, 3, 2, tzinfo=UTC))
    stream, done = assign_stream("mariadb", CHAIN, [], again, 1000)
    assert not done and stream != "S" and stream.startswith("1-mysql-bin.000001-")
    assert assign_stream("mariadb", CHAIN, [], again, 1000)[0] == stream  # deterministic
    later = [*CHAIN, known(stream, 1, "", "0-1-2")]
    assert assign_stream("mariadb", later, [], head(2, "0-1-2"), 1) == (stream, False)


def test_a_gap_keeps_the_stream_so_the_planner_sees_it() -> None:
    assert assign_stream("mariadb", CHAIN, [], head(5, "0-1-20"), 1) == ("S", False)
    # a state that does not include the stream's last one is another sequence
    assert assign_stream("mariadb", CHAIN, [], head(5, "0-2-1"), 1)[0] != "S"


def test_another_server_never_joins() -> None:
    assert assign_stream("mariadb", CHAIN, [], head(3, "0-1-6", system="2"), 1)[0] != "S"


def test_a_backup_anchors_the_file_it_was_taken_in() -> None:
    h = head(1, "", created=datetime(2026, 4, 1, tzinfo=UTC))
    backup = Backup(
        "B", "full", None, "main", "mariadb", "1", T, T, "x:4", "x:4", 4, 4, "ANCHOR", (),
        engine_meta={"binlog_head": h.to_dict()},
    )  # fmt: skip
    assert assign_stream("mariadb", CHAIN, [backup], h, None) == ("ANCHOR", False)


def test_mysql_sets() -> None:
    chain = [known("M", 7, f"{UUID}:1-5", f"{UUID}:1-9")]
    assert assign_stream("mysql", chain, [], head(8, f"{UUID}:1-9"), 1) == ("M", False)
    assert assign_stream("mysql", chain, [], head(9, f"{UUID}:1-20"), 1) == ("M", False)


def test_segment_document_of_a_real_binlog() -> None:
    path = VECTORS / "generated" / "mysql-bin.000002"  # MariaDB 10.11, ROW events and DDL
    index = index_binlog_file(path)
    stored = StoredObject(f"main/logs/S/{index.name}.zst", 10, "0" * 64, index.size, "zstd")
    doc = segment_document(index, "S", "1", stored, T)
    seg = doc.segment
    assert seg.kind == "binlog" and seg.start_key == key_of(index.name, 4)
    assert seg.end_key == key_of(index.name, index.size)
    assert seg.commits == len(doc.transactions) == len(index.transactions)
    first = doc.transactions[0]
    assert first.position == f"{index.name}:{index.transactions[0].start}"
    assert first.key == key_of(index.name, index.transactions[0].start)
    assert all("generated by server" not in t.summary for t in doc.transactions)
    assert seg.extra["created"] is not None and head_of(index).name == index.name


def test_option_file_quotes_the_password_and_is_private() -> None:
    settings = InstanceSettings("main", "mariadb", user="pitr", password='a "b" \\c',
                                socket="/run/s.sock")  # fmt: skip
    server = MyServer(settings)
    with server.option_file() as path:
        assert path.stat().st_mode & 0o777 == 0o600
        text = path.read_text()
    assert not path.exists()
    assert 'password="a \\"b\\" \\\\c"' in text and 'socket="/run/s.sock"' in text
    with (
        pytest.raises(UsageError),
        MyServer(InstanceSettings("m", "mariadb", password="a\nb")).option_file(),
    ):
        pass
