"""Binlog parser and indexer against real binlogs (tests/vectors, see tests/vectors/NOTICE)."""

from __future__ import annotations

import gc
import gzip
import io
import re
import struct
import subprocess
from pathlib import Path

import pytest

from pitr.engines.mysql.binlog import (
    BinlogIndex,
    index_binlog,
    index_binlog_file,
    iter_events,
)
from pitr.engines.mysql.binlog import reader as binlog_reader
from pitr.errors import FormatError

V = Path(__file__).resolve().parent.parent / "vectors"
RMC = V / "rust_mysql_common"
JAVA = V / "mysql-binlog-connector-java"
RUST = V / "mysql-binlog-connector-rust"
POC = V / "mariadb-poc"
GEN = V / "generated"


def ix(path: Path, **kwargs: int) -> BinlogIndex:
    return index_binlog_file(path, **kwargs)


def ix_bytes(data: bytes, name: str = "test", **kwargs: int) -> BinlogIndex:
    return index_binlog(io.BytesIO(data), name, **kwargs)


def gtids(index: BinlogIndex) -> list[str | None]:
    return [t.gtid for t in index.transactions]


def event_types(path: Path) -> list[tuple[int, str, int | None]]:
    with path.open("rb") as f:
        return [(e.offset, e.type_name, e.payload_offset) for e in iter_events(f, path.name)]


# --- upstream-asserted facts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "count"),
    [
        (JAVA / "mysql-bin.checksum-none", 191),
        (JAVA / "mysql-bin.checksum-crc32", 303),
        (JAVA / "mysql-bin.compressed", 5),
        (JAVA / "mysql-bin.aurora-padding", 5),
        (RUST / "mysql-bin.000057", 8),
        (RUST / "mysql-bin.000080", 37),
        (RMC / "mariadb-bin.000001", 13),
        (RMC / "binlog_transaction_previous_GTID_no_tag.000001", 3),
        (V / "canal/tsdb/mysql-bin.000002", 38),
        (V / "canal/tsdb/mysql-bin.000003", 131),
    ],
)
def test_event_counts(path: Path, count: int) -> None:
    index = ix(path)
    assert index.event_count == count
    assert not index.truncated and index.valid_end == index.size == path.stat().st_size


def test_sakila_gzip_rejected_and_1462_events_inside() -> None:
    path = JAVA / "mysql-bin.sakila.gz"
    with pytest.raises(FormatError, match=r"mysql-bin\.sakila\.gz: not a binlog.*offset 0"):
        ix(path)
    index = ix_bytes(gzip.decompress(path.read_bytes()), "mysql-bin.sakila")
    assert index.event_count == 1462
    assert index.in_use and index.checksum == "none" and index.server_version.startswith("5.5.27")
    inserted = sum(t.rows or 0 for tx in index.transactions for t in tx.tables)
    assert inserted > 40000
    assert all(t.rows is not None for tx in index.transactions for t in tx.tables)


def test_checksums_none_and_crc32() -> None:
    assert ix(JAVA / "mysql-bin.checksum-none").checksum == "none"
    crc = ix(JAVA / "mysql-bin.checksum-crc32")
    assert crc.checksum == "crc32" and crc.next_file == "mysql-bin.000002"


def test_aurora_padding_is_skipped() -> None:
    types = event_types(JAVA / "mysql-bin.aurora-padding")
    assert [(o, t) for o, t, _ in types] == [
        (4, "FORMAT_DESCRIPTION"), (185, "PREVIOUS_GTIDS"), (216, "ANONYMOUS_GTID"),
        (281, "UNKNOWN_100"), (1209, "QUERY"),
    ]  # fmt: skip
    index = ix(JAVA / "mysql-bin.aurora-padding")
    assert index.server_ids == (173935376,) and index.transactions == ()  # BEGIN, then the end


def test_compressed_payload_is_decoded() -> None:
    path = RMC / "transaction_compression.000001"
    index = ix(path)
    assert index.gtids_before == "357df524-4139-11ee-9979-b033ee13919e:1"
    assert [t.xid for t in index.transactions] == [462]
    (tx,) = index.transactions
    assert (tx.gtid, tx.start, tx.end, tx.kind) == (None, 197, 431, "dml")
    assert tx.summary == "INSERT test.tb1: 1 rows"
    assert tx.time.isoformat() == "2023-09-19T21:31:49.445737+00:00"
    assert index.next_file == "binlog.000043"
    inner = [t for _, t, parent in event_types(path) if parent == 274]
    assert inner == ["QUERY", "TABLE_MAP", "WRITE_ROWS", "XID"]
    java = ix(JAVA / "mysql-bin.compressed")
    assert java.server_id == 223344 and java.next_file == "mysql-bin.000005"
    assert [(t.xid, t.summary) for t in java.transactions] == [(31, "UPDATE demo.movies: 1 rows")]


def test_previous_gtids_untagged() -> None:
    index = ix(RMC / "binlog_transaction_previous_GTID_no_tag.000001")
    assert index.gtids_before == index.gtids_after == "b9b88c66-0755-11f1-9899-4a9da94c4d71:1-2"
    assert index.next_file == "binlog.000008" and index.flavor == "mysql"


def test_tagged_gtids() -> None:
    index = ix(RMC / "binlog_transaction_with_GTID_TAG.000001")
    u = "55778904-0299-11f1-b1b8-4ef0c4956feb"
    assert index.gtids_before == f"{u}:1-13,{u}:mytag:1-2"
    assert gtids(index) == [f"{u}:mytag:3"]
    assert index.gtids_after == f"{u}:1-13,{u}:mytag:1-3"
    assert index.server_version == "9.6.0" and index.transactions[0].xid == 40


def test_in_use_file_and_fde_checksum() -> None:
    index = ix(RMC / "mysql_type_bit.000001")
    assert index.in_use and not index.truncated and index.next_file is None
    assert index.gtids_after == "fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a:1-3"
    assert index.transactions[-1].xid == 51
    assert index.transactions[-1].summary == "INSERT mysql.foo: 1 rows"
    # Setting the in-use flag on a closed file keeps its FDE checksum valid (server behaviour).
    data = bytearray((JAVA / "mysql-bin.checksum-crc32").read_bytes())
    data[21] |= 1
    assert ix_bytes(bytes(data)).in_use


def test_mariadb_10_5_row_metadata() -> None:
    index = ix(RMC / "mariadb-bin.000001")
    assert index.flavor == "mariadb" and index.in_use
    assert gtids(index) == ["0-1-1", "0-1-2"]
    assert [t.xid for t in index.transactions] == [800, 820]
    assert index.gtids_before == "" and index.gtids_after == "0-1-2"
    assert {t.table for tx in index.transactions for t in tx.tables} == {"toddy_test.outbox"}


def test_mysql_gtids_and_times() -> None:
    r57 = ix(RUST / "mysql-bin.000057")
    u57 = "76f3e7be-6720-11ed-9cad-0242ac110002"
    assert r57.gtids_before == f"{u57}:1-10" and r57.gtids_after == f"{u57}:1-13"
    assert gtids(r57) == [f"{u57}:{n}" for n in (11, 12, 13)]
    r80 = ix(RUST / "mysql-bin.000080")
    u80 = "58cf6502-63db-11ed-8079-0242ac110002"
    assert r80.gtids_before == f"{u80}:1-52" and r80.gtids_after == f"{u80}:1-62"
    assert gtids(r80) == [f"{u80}:{n}" for n in range(53, 63)]
    xids = [t.xid for t in r80.transactions if t.xid is not None]
    assert len(xids) == 5 and (xids[0], xids[-1]) == (161, 182)
    ep = ix(V / "rust-mysql-binlog/bin-log.000001")
    u = "87cee3a4-6b31-11e7-bdfd-0d98d6698870"
    assert ep.server_ids == (36431,) and ep.in_use
    assert ep.gtids_before == f"{u}:1-14916"
    assert gtids(ep) == [f"{u}:14917", f"{u}:14918", f"{u}:14919"]
    assert ep.transactions[0].summary.startswith("CREATE TABLE foo(id BIGINT AUTO_INCREMENT")
    assert ep.transactions[0].kind == "ddl"
    assert int(ep.transactions[1].time.timestamp()) == 1550192291
    assert ep.transactions[1].summary == "INSERT bltest.foo: 1 rows"
    small = ix(V / "wal-g/binlog_small_test")
    assert small.first_time is not None and int(small.first_time.timestamp()) == 1566047760


def test_canal_in_use_file() -> None:
    index = ix(V / "canal/tsdb/mysql-bin.000003")
    assert index.in_use and len([t for t in index.transactions if t.xid is not None]) == 21
    with (V / "canal/tsdb/mysql-bin.000003").open("rb") as f:
        at = {e.offset: e.timestamp for e in iter_events(f)}
    assert at[219] == 1505467103
    assert ix(V / "canal/tsdb/mysql-bin.000002").stopped


def test_go_mysql_decimal_rows() -> None:
    index = ix(V / "go-mysql/tcb-eval002c-bin.003320")
    (tx,) = index.transactions
    assert (tx.xid, tx.start, tx.end) == (4599, 120, 2085)
    assert tx.tables[0].table == "test.decodedecimal" and tx.tables[0].rows is not None
    assert index.next_file == "tcb-eval002c-bin.003321" and index.gtids_before is None


POC_README = [  # file, size, first ts, last ts, GTID_LIST, first GTID, last GTID, rotate, stop
    ("000001", 358, 1767101638, 1767127977, "", None, None, False, True),
    ("000002", 3753792, 1767127979, 1767128127, "", "0-10-250080", "0-10-254512", True, False),
    ("000004", 343488, 1767128182, 1767128185, "0-10-262175", "0-10-262176", "0-10-262580", True,
     False),
    ("000005", 74142, 1767128185, 1767128186, "0-10-262580", "0-10-262581", "0-10-262667", True,
     False),
    ("000006", 56355, 1767128186, 1767128186, "0-10-262667", "0-10-262668", "0-10-262733", True,
     False),
    ("000007", 53814, 1767128186, 1767128187, "0-10-262733", "0-10-262734", "0-10-262796", True,
     False),
    ("000009", 935, 1767173589, 1767181052, "0-10-292193", "0-10-292194", "0-10-292196", False,
     True),
    ("000010", 2210, 1767181182, 1767181241, "0-10-292196", "0-10-292197", "0-10-292206", False,
     True),
]  # fmt: skip


@pytest.mark.parametrize("row", POC_README, ids=[r[0] for r in POC_README])
def test_mariadb_poc_domain_0(row: tuple[object, ...]) -> None:
    suffix, size, first, last, before, first_gtid, last_gtid, rotate, stop = row
    index = ix(POC / f"domain_id_0/mariadb-repl-bin.{suffix}")
    assert index.size == size and index.server_ids == (10,)
    assert index.first_time is not None and index.last_time is not None
    assert (int(index.first_time.timestamp()), int(index.last_time.timestamp())) == (first, last)
    assert index.gtids_before == before
    seen = gtids(index)
    assert (seen[0] if seen else None, seen[-1] if seen else None) == (first_gtid, last_gtid)
    assert (index.next_file is not None, index.stopped) == (rotate, stop)
    if seen:  # consecutive, and the state after is the last GTID
        seqs = [int(str(g).rsplit("-", 1)[1]) for g in seen]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert index.gtids_after == last_gtid


def test_mariadb_poc_domain_1() -> None:
    assert ix(POC / "domain_id_1/mariadb-repl-bin.000001").stopped
    index = ix(POC / "domain_id_1/mariadb-repl-bin.000002")
    assert gtids(index) == [f"1-10-{n}" for n in range(1, 13)]
    assert {t.kind for t in index.transactions} == {"ddl"}
    assert index.next_file == "mariadb-repl-bin.000003" and index.gtids_after == "1-10-12"


# --- generated MariaDB 10.11 binlogs -------------------------------------------------------------


def test_generated_row_file() -> None:
    index = ix(GEN / "mysql-bin.000002")
    by_gtid = {t.gtid: t for t in index.transactions}
    assert index.gtids_after == "0-1-20,1-1-1" and index.server_ids == (1, 7)
    assert by_gtid["0-1-1"].kind == "ddl" and by_gtid["0-1-1"].summary == "CREATE DATABASE shop"
    assert by_gtid["0-1-6"].summary == (
        "INSERT shop.orders: 1 rows; UPDATE shop.orders: 2 rows; DELETE shop.orders: 1 rows"
    )
    assert by_gtid["0-1-7"].summary == "INSERT shop.types: 1 rows"  # every column type
    assert by_gtid["0-1-9"].summary == "UPDATE shop.types: 3 rows"
    assert by_gtid["0-1-10"].xid is None  # MyISAM: ends with a COMMIT query
    assert by_gtid["0-7-12"].server_id == 7 and by_gtid["1-1-1"].xid == 46
    assert (by_gtid["0-1-13"].kind, by_gtid["0-1-14"].kind) == ("xa-prepare", "xa-commit")
    assert by_gtid["0-1-16"].summary.endswith("(+1 more)") and by_gtid["0-1-16"].kind == "dml"
    assert by_gtid["0-1-18"].summary == "INSERT shop.orders: 500 rows"
    assert by_gtid["0-1-19"].summary == "DELETE shop.orders: 500 rows"


def test_generated_compressed_no_checksum_and_in_use() -> None:
    comp = ix(GEN / "mysql-bin.000004")
    assert [t.summary for t in comp.transactions[1:4]] == [
        "INSERT shop.comp: 50 rows", "UPDATE shop.comp: 10 rows", "DELETE shop.comp: 10 rows",
    ]  # fmt: skip
    assert comp.transactions[0].summary.startswith("CREATE TABLE comp")
    assert comp.transactions[4].summary == "INSERT INTO comp VALUES (100, REPEAT('q', 150), 1)"
    plain = ix(GEN / "mysql-bin.000006")
    assert plain.checksum == "none" and gtids(plain) == ["0-1-26", "0-1-27", "0-1-28"]
    live = ix(GEN / "mysql-bin.000008.in-use")
    assert live.in_use and live.next_file is None and not live.stopped
    times = [t.time.isoformat() for t in live.transactions]
    assert times[1:3] == ["2026-11-25T13:19:31.761131+00:00", "2026-11-25T13:19:31.761948+00:00"]
    assert times[3] == "2026-11-25T13:19:31+00:00"  # row format: no QUERY event, no Q_HRNOW


def _mariadb_binlog(path: Path, *args: str) -> str:
    cmd = ["mariadb-binlog", "--no-defaults", "--base64-output=decode-rows", "-v", *args]
    done = subprocess.run([*cmd, str(path)], capture_output=True, check=True)
    return done.stdout.decode("utf-8", "replace")


CROSS_CHECKED = [  # every file here that mariadb-binlog reads
    GEN / "mysql-bin.000002", GEN / "mysql-bin.000004", GEN / "mysql-bin.000006",
    GEN / "mysql-bin.000008.in-use", RMC / "mariadb-bin.000001",
    POC / "domain_id_0/mariadb-repl-bin.000010", POC / "domain_id_1/mariadb-repl-bin.000002",
    JAVA / "mysql-bin.checksum-crc32", JAVA / "mysql-bin.checksum-none",
    V / "canal/tsdb/mysql-bin.000002", V / "canal/tsdb/mysql-bin.000003",
    V / "go-mysql/tcb-eval002c-bin.003320", V / "rust-mysql-binlog/bin-log.000001",
    RUST / "mysql-bin.000080", JAVA / "mysql-bin.sakila.gz",
]  # fmt: skip


@pytest.mark.parametrize("path", CROSS_CHECKED, ids=lambda p: p.name)
def test_cross_check_with_mariadb_binlog(path: Path, tmp_path: Path) -> None:
    if path.suffix == ".gz":
        path = tmp_path / path.stem
        path.write_bytes(gzip.decompress((JAVA / "mysql-bin.sakila.gz").read_bytes()))
    out = _mariadb_binlog(path)
    starts = {int(n) for n in re.findall(r"^# at (\d+)$", out, re.M)}
    ends = {int(n) for n in re.findall(r" end_log_pos (\d+) ", out)}
    their = re.findall(
        r"^# at (\d+)\n#\d{6} [\d:]+ server id \d+ .*\tGTID (\d+-\d+-\d+)", out, re.M
    )
    rows = sum(int(n) for n in re.findall(r"^# Number of rows: (\d+)$", out, re.M))
    index = ix(path)
    if index.flavor == "mariadb":
        assert [(t.start, t.gtid) for t in index.transactions] == [(int(a), g) for a, g in their]
    for tx, nxt in zip(index.transactions, [*index.transactions[1:], None], strict=True):
        assert tx.start in starts and tx.end in ends
        assert nxt is None or tx.end <= nxt.start
    assert sum(t.rows or 0 for tx in index.transactions for t in tx.tables) == rows
    subprocess.run(
        ["mariadb-binlog", "--no-defaults", "--verify-binlog-checksum", str(path)],
        capture_output=True, check=True,
    )  # fmt: skip


def test_positions_replay_exactly_one_transaction() -> None:
    path = GEN / "mysql-bin.000002"
    for tx in ix(path).transactions:
        out = _mariadb_binlog(path, f"--start-position={tx.start}", f"--stop-position={tx.end}")
        assert re.findall(r"\tGTID (\S+)", out) == [tx.gtid]
        assert re.search(r"COMMIT|Xid|XA PREPARE|^(CREATE|ALTER|DROP|XA COMMIT)", out, re.M)


# --- broken input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (RUST / "non-binlog", "bad magic"),
        (V / "canal/tsdb/mysql-bin.000001", "bad magic"),  # mangled by UTF-8 re-encoding
        (RMC / "binlog_truncated_event.000001", "ends inside the format description"),
    ],
)
def test_not_a_binlog(path: Path, message: str) -> None:
    with pytest.raises(FormatError, match=rf"^{re.escape(path.name)}: .*{message}.* offset \d+$"):
        ix(path)


@pytest.mark.parametrize("cut", [0, 3, 4, 10, 22, 120])
def test_cut_inside_fde_is_an_error(cut: int) -> None:
    with pytest.raises(FormatError):
        ix_bytes((JAVA / "mysql-bin.checksum-crc32").read_bytes()[:cut])


def test_torn_tail() -> None:
    path = V / "canal/tsdb/mysql-bin.000003"
    data = path.read_bytes()
    full = ix(path)
    bounds = [t.end for t in full.transactions]
    for cut in (bounds[3] + 1, bounds[3] + 19, bounds[10] - 1, len(data) - 1):
        part = ix_bytes(data[:cut])
        assert part.truncated and part.size == cut
        assert part.valid_end < cut and part.valid_end in {e[0] for e in _offsets(path)}
        assert part.transactions == tuple(t for t in full.transactions if t.end <= cut)
    short = ix_bytes((V / "wal-g/binlog_small_test").read_bytes()[:140])  # in PREVIOUS_GTIDS
    assert short.truncated and short.valid_end == 123 and short.event_count == 1


def _offsets(path: Path) -> list[tuple[int, int]]:
    with path.open("rb") as f:
        return [(e.offset, e.size) for e in iter_events(f) if e.payload_offset is None]


def test_checksum_mismatch_names_the_offset() -> None:
    data = bytearray((JAVA / "mysql-bin.checksum-crc32").read_bytes())
    offset, size = _offsets(JAVA / "mysql-bin.checksum-crc32")[5]
    data[offset + size // 2] ^= 0x40
    with pytest.raises(FormatError, match=rf"checksum mismatch .* at offset {offset}$"):
        ix_bytes(bytes(data))


# --- bounded memory: large events stream past --------------------------------------------------


def _without_row_counts(index: BinlogIndex) -> list[tuple[object, ...]]:
    return [
        (t.gtid, t.xid, t.start, t.end, t.kind, t.time, [(r.op, r.table) for r in t.tables])
        for t in index.transactions
    ]


@pytest.mark.parametrize(
    "path",
    [GEN / "mysql-bin.000002", GEN / "mysql-bin.000004", RMC / "transaction_compression.000001",
     RUST / "mysql-bin.000057", JAVA / "mysql-bin.checksum-none"],
    ids=lambda p: p.name,
)  # fmt: skip
def test_large_events_stream(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = ix(path)
    monkeypatch.setattr(binlog_reader, "CHUNK", 7)
    small = ix(path, max_in_memory=300)
    assert _without_row_counts(small) == _without_row_counts(full)
    assert (small.event_count, small.gtids_after, small.valid_end) == (
        full.event_count, full.gtids_after, full.valid_end,
    )  # fmt: skip
    torn = ix_bytes(path.read_bytes()[: full.transactions[-1].end - 5], max_in_memory=100)
    assert torn.truncated
    assert _without_row_counts(torn) == _without_row_counts(full)[:-1]
    if path.name in ("transaction_compression.000001", "mysql-bin.000057"):
        monkeypatch.setattr(binlog_reader, "HEAD_SIZE", 24)  # payloads stream in pieces
        assert _without_row_counts(ix(path, max_in_memory=110)) == _without_row_counts(full)


def test_corrupt_large_event_is_an_error() -> None:
    data = bytearray((GEN / "mysql-bin.000002").read_bytes())
    data[20000] ^= 1  # inside the 8 KB row events of the 500-row INSERT
    with pytest.raises(FormatError, match="checksum mismatch"):
        ix_bytes(bytes(data), max_in_memory=1000)


class _Watching(io.BytesIO):
    """A file that notes whether the cyclic garbage collector runs whenever it is read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.collector: set[bool] = set()

    def read(self, n: int | None = -1, /) -> bytes:
        self.collector.add(gc.isenabled())
        return super().read(n)


@pytest.mark.parametrize("running", [True, False])
def test_collector_paused_while_indexing_then_as_it_was(running: bool) -> None:
    """Indexing pauses the cyclic garbage collector (for speed), then leaves it as it was,
    also when the file turns out not to be a binlog."""
    was = gc.isenabled()
    gc.enable() if running else gc.disable()
    try:
        watched = _Watching((GEN / "mysql-bin.000002").read_bytes())
        assert index_binlog(watched, "w").transactions
        assert watched.collector == {False}
        assert gc.isenabled() is running
        with pytest.raises(FormatError, match="bad magic"):
            ix(RUST / "non-binlog")
        assert gc.isenabled() is running
    finally:
        gc.enable() if was else gc.disable()


class _Synthetic(io.RawIOBase):
    """A file made of byte strings and runs of zeros (ints), served without holding it."""

    def __init__(self, parts: list[bytes | int]) -> None:
        self.parts = parts
        self.block = bytes(1 << 20)

    def read(self, n: int = -1) -> bytes:
        while self.parts:
            head = self.parts.pop(0)
            if isinstance(head, int):
                take = min(n, head)
                if head > take:
                    self.parts.insert(0, head - take)
                if take:
                    return self.block if take == len(self.block) else bytes(take)
            elif head:
                if len(head) > n:
                    self.parts.insert(0, head[n:])
                return head[:n]
        return b""


def test_offsets_past_4_gib() -> None:
    """Positions come from offsets, not the 32-bit next_position: two 2.1 GB events of an
    unknown type stream past (checksums off) and a DDL after them is placed correctly."""
    fde = (JAVA / "mysql-bin.checksum-none").read_bytes()[:123]
    header = struct.Struct("<IBIIIH")
    huge = (1 << 31) + 4096
    query = struct.pack("<IIBHH", 1, 0, 4, 0, 0) + b"test\0" + b"CREATE TABLE far (i INT)"
    parts: list[bytes | int] = [
        fde, header.pack(1_600_000_000, 100, 1, huge, 0, 0), huge - 19,
        header.pack(1_600_000_001, 100, 1, huge, 0, 0), huge - 19,
        header.pack(1_600_000_002, 2, 1, 19 + len(query), 0, 0) + query,
    ]  # fmt: skip
    index = index_binlog(_Synthetic(parts), "big")  # type: ignore[arg-type]
    start = 123 + 2 * huge
    assert start > 2**32 and index.event_count == 4 and not index.truncated
    (tx,) = index.transactions
    assert (tx.start, tx.end, tx.kind) == (start, start + 19 + len(query), "ddl")
    assert index.valid_end == index.size == tx.end
