"""``pitr inspect`` and the pure-Python WAL reader, against real files.

Upstream vectors (tests/vectors/NOTICE): wal-g's WAL pages (PostgreSQL 10 and 11) and
pgBackRest's timeline histories, checked for what upstream asserts about them. Generated
PostgreSQL 15 and 18 segments (tests/vectors/wal/generated/README.md, generated-18/): every
record cross-checked against that version's ``pg_waldump``. Binlogs go through the binlog
indexer. Anything else, mutated or misnamed, is a FormatError, never another exception or a
hang.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers.postgres import bindir_for

from pitr.cli import documents
from pitr.commands import inspect
from pitr.engines.postgresql.walreader import (
    WalReader,
    WalRecord,
    crc32c,
    decode_restore_point,
    decode_xact,
    is_switch,
    iter_records,
    main_data,
)
from pitr.errors import FormatError, UsageError

V = Path(__file__).resolve().parent.parent / "vectors"
WALG = V / "wal/wal-g"
GEN = V / "wal/generated"
GEN_BY_MAJOR = {15: GEN, 18: V / "wal/generated-18"}  # the same make-wal.sh, another BIN
HIST = V / "history/pgbackrest"
MIXED, CONTINUED, TLI2 = (
    "000000010000000000000004",
    "000000010000000000000006",
    "000000020000000000000004",
)
PAGE = 8192


def inspect_file(path: str) -> dict[str, Any]:
    """The file's entry as ``inspect --json`` prints it."""
    entry: dict[str, Any] = documents.inspect([inspect.inspect_file(path)])["files"][0]
    return entry


def walk(path: Path, **kwargs: bool) -> tuple[WalReader, list[WalRecord]]:
    with path.open("rb") as f:
        reader = WalReader(f, path.name, **kwargs)
        return reader, list(reader)


def walk_bytes(data: bytes, verify: bool = True) -> tuple[WalReader, list[WalRecord]]:
    reader = WalReader(io.BytesIO(data), "fuzz", verify=verify)
    return reader, list(reader)


def lsn(text: str) -> int:
    high, low = text.split("/")
    return int(high, 16) << 32 | int(low, 16)


@pytest.fixture(scope="module")
def generated_by_major(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Path]]:
    """The generated segments of each major version, decompressed under their own names."""
    found: dict[int, dict[str, Path]] = {}
    for major, directory in GEN_BY_MAJOR.items():
        out = tmp_path_factory.mktemp(f"wal{major}")
        files = found.setdefault(major, {})
        for name in (MIXED, CONTINUED, TLI2):
            with (directory / f"{name}.zst").open("rb") as src, (out / name).open("wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(src, dst)
            files[name] = out / name
    return found


@pytest.fixture(scope="module")
def generated(generated_by_major: dict[int, dict[str, Path]]) -> dict[str, Path]:
    """The generated PostgreSQL 15 segments."""
    return generated_by_major[15]


# --- CRC-32C -------------------------------------------------------------------------------------


def test_crc32c_check_value_and_continuation() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the catalogued CRC-32C check value
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283
    assert crc32c(b"") == 0


# --- wal-g vectors (PostgreSQL 10 and 11) --------------------------------------------------------


def test_walg_wal_switch_test_ends_with_a_switch() -> None:
    """UPSTREAM: page 1 parses; the last record on page 2 is XLOG_SWITCH."""
    reader, records = walk(WALG / "walparser/wal_switch_test")
    assert reader.version == 11 and reader.header is None  # a run of pages, not a segment
    assert is_switch(records[-1]) and reader.switched
    assert records[-1].lsn == lsn("0/78393468") and records[-1].lsn // PAGE == 0x78392000 // PAGE
    assert reader.end_reason.startswith("XLOG SWITCH")
    commits = [x for r in records if (x := decode_xact(r))]
    assert [(x.status, x.xid) for x in commits] == [("commit", n) for n in (163652, 163653, 163654)]
    assert commits[0].time.isoformat() == "2018-07-16T04:37:22.114778+00:00"


def test_walg_cut_wal_switch_test_splits_the_switch_header() -> None:
    """UPSTREAM: the switch record is split across the page boundary. Its 8 + 16 bytes make a
    valid XLOG SWITCH record; page 2 repeats page 1's address (the file was cut together), so
    PostgreSQL's rules end valid WAL at page 2."""
    data = (WALG / "walparser/cut_wal_switch_test").read_bytes()
    record = data[PAGE - 8 : PAGE] + data[PAGE + 24 : PAGE + 40]
    total, _xid, _prev, info, rmid, crc = struct.unpack("<IIQBBxxI", record)
    assert (total, info, rmid) == (24, 0x40, 0) and crc32c(record[:20]) == crc
    reader, records = walk(WALG / "walparser/cut_wal_switch_test")
    assert records == [] and reader.end_reason.startswith("invalid page header")
    assert reader.end_reason.endswith("at 0/78392000")


@pytest.mark.parametrize(("name", "count"), [("partial_test", 1), ("small_partial_test", 0)])
def test_walg_partial_pages_end_in_zeroes(name: str, count: int) -> None:
    """UPSTREAM: a "partial page": valid records stop mid-page, zeroes follow."""
    reader, records = walk(WALG / "walparser" / name)
    assert len(records) == count and reader.end_reason.startswith("zeroed space")
    assert reader.end_lsn % PAGE not in (0, PAGE - 1)


def test_walg_long_record_spans_three_pages() -> None:
    """UPSTREAM: one record spans all three pages (PostgreSQL 10; page 2 has a long header)."""
    reader, records = walk(WALG / "walparser/long_record")
    assert reader.version == 10 and len(records) == 215
    [long] = [r for r in records if r.lsn // PAGE != (r.end_lsn - 1) // PAGE]
    assert (long.end_lsn - 1) // PAGE - long.lsn // PAGE == 2 and len(long.data) == 8241
    assert (long.rmid, long.info) == (0, 0xA0)  # XLOG FPI_FOR_HINT: one page image, no main data
    assert main_data(long) == b""
    assert reader.end_reason.startswith("file ends inside a record")


def test_walg_segment_prefix_through_inspect() -> None:
    """UPSTREAM: file-name tests only. 16 KiB of a PostgreSQL 11 segment: truncated."""
    entry = inspect_file(str(WALG / "00000001000000000000007C"))
    assert entry["kind"] == "wal" and entry["server_version"] == "PostgreSQL 11"
    assert (entry["timeline"], entry["start_lsn"], entry["segment_size"]) == (
        1,
        "0/7C000000",
        16 << 20,
    )
    assert entry["system_identifier"] == "6573102671274428329"
    assert entry["truncated"] and entry["name_matches"] and not entry["in_use"]
    assert entry["checksum"] == "crc32c" and entry["transactions"] == [] and entry["records"] == 1


@pytest.mark.parametrize(
    "name", ["cut_wal_switch_test", "long_record", "partial_test", "wal_switch_test"]
)
def test_runs_of_pages_are_not_segments(name: str) -> None:
    with pytest.raises(FormatError, match="no long page header"):
        inspect_file(str(WALG / "walparser" / name))


# --- timeline histories ---------------------------------------------------------------------------

REASON = "no recovery target specified"


@pytest.mark.parametrize(
    ("name", "parents"),
    [
        ("00000002", [1]),
        ("0000000A", list(range(1, 10))),
        ("0000000B", list(range(1, 11))),
        ("0000000C", [1, 2, 3, 4]),
        ("0000000D", [1, 2, 3, 4]),
        ("0000000E", [1, 2, 3, 4, 13]),  # the parent of 14 is 13, not the previous line's + 1
    ],
)
def test_pgbackrest_histories(name: str, parents: list[int]) -> None:
    entry = inspect_file(str(HIST / f"{name}.history"))
    assert entry["kind"] == "timeline-history" and entry["timeline"] == int(name, 16)
    expected = [
        {"parent_timeline": p, "switch_lsn": f"0/{4 + i:X}000000", "reason": REASON}
        for i, p in enumerate(parents)
    ]
    assert entry["entries"] == expected


def test_history_by_content_and_misnamed(tmp_path: Path) -> None:
    text = (HIST / "0000000E.history").read_bytes()
    (tmp_path / "history.txt").write_bytes(text)
    entry = inspect_file(str(tmp_path / "history.txt"))
    assert entry["timeline"] is None and len(entry["entries"]) == 5
    (tmp_path / "0000000D.history").write_bytes(text)  # timeline 13 cannot descend from 13
    with pytest.raises(FormatError, match="as a parent"):
        inspect_file(str(tmp_path / "0000000D.history"))
    (tmp_path / "00000001000000000000000E").write_bytes(text)
    with pytest.raises(FormatError, match="named like a WAL segment"):
        inspect_file(str(tmp_path / "00000001000000000000000E"))
    (tmp_path / "00000003.history").write_bytes(b"# nothing\n")
    with pytest.raises(FormatError, match="without entries"):
        inspect_file(str(tmp_path / "00000003.history"))


# --- generated PostgreSQL 15 WAL against pg_waldump -----------------------------------------------

RMGRS = [  # PostgreSQL 15's resource managers, by rmid (rmgrlist.h; the same in 18)
    *("XLOG", "Transaction", "Storage", "CLOG", "Database", "Tablespace", "MultiXact"),
    *("RelMap", "Standby", "Heap2", "Heap", "Btree", "Hash", "Gin", "Gist", "Sequence"),
    *("SPGist", "BRIN", "CommitTs", "ReplicationOrigin", "Generic", "LogicalMessage"),
]
DUMP_LINE = re.compile(
    r"^rmgr: (\w+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+), lsn: (\S+), prev (\S+), "
    r"desc: (.*)$"
)
DUMP_XACT = re.compile(r"^(COMMIT|ABORT)(?:_PREPARED (\d+):)? (\d{4}-\S+ \S+) UTC")


def pg_waldump(major: int) -> str:
    """PostgreSQL ``major``'s pg_waldump (16 to 18: installed by scripts/install-postgres)."""
    found = str(bindir_for(major) / "pg_waldump")
    assert os.access(found, os.X_OK), f"pg_waldump (PostgreSQL {major}) is needed"
    return found


def waldump(path: Path, major: int = 15) -> list[tuple[str, int, int, int, int, str]]:
    """(rmgr, total length, xid, lsn, prev, description) per record."""
    done = subprocess.run(
        [pg_waldump(major), str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        check=True,
    )
    rows = []
    for line in done.stdout.splitlines():
        m = DUMP_LINE.match(line)
        assert m, line
        rmgr, total, xid, at, prev, desc = m.groups()
        rows.append((rmgr, int(total), int(xid), lsn(at), lsn(prev), desc))
    return rows


@pytest.mark.parametrize("major", sorted(GEN_BY_MAJOR))
@pytest.mark.parametrize("name", [MIXED, CONTINUED, TLI2])
def test_every_record_matches_pg_waldump(
    generated_by_major: dict[int, dict[str, Path]], name: str, major: int
) -> None:
    generated = generated_by_major[major]
    dump = waldump(generated[name], major)
    reader, records = walk(generated[name])
    assert reader.version == major
    assert len(records) == len(dump) == reader.records
    mine = [(RMGRS[r.rmid], len(r.data), r.xid, r.lsn, r.prev) for r in records]
    assert mine == [row[:5] for row in dump]
    assert reader.switched and dump[-1][5].startswith("SWITCH")


@pytest.mark.parametrize("major", sorted(GEN_BY_MAJOR))
@pytest.mark.parametrize("name", [MIXED, CONTINUED, TLI2])
def test_transactions_and_restore_points_match_pg_waldump(
    generated_by_major: dict[int, dict[str, Path]], name: str, major: int
) -> None:
    generated = generated_by_major[major]
    expected_xacts, expected_points = [], []
    for rmgr, _total, xid, at, _prev, desc in waldump(generated[name], major):
        if rmgr == "Transaction" and (m := DUMP_XACT.match(desc)):
            status, prepared_xid, when = m.groups()
            time = datetime.fromisoformat(when + "+00:00").isoformat()
            expected_xacts.append(
                (status.lower(), int(prepared_xid or xid), time, at, prepared_xid is not None)
            )
        elif rmgr == "XLOG" and desc.startswith("RESTORE_POINT "):
            expected_points.append((desc.removeprefix("RESTORE_POINT "), at))
    entry = inspect_file(str(generated[name]))
    xacts = [
        (t["status"], t["xid"], t["time"], lsn(t["position"]), t["prepared"])
        for t in entry["transactions"]
    ]
    assert xacts == expected_xacts
    assert [(p["name"], lsn(p["position"])) for p in entry["restore_points"]] == expected_points
    commits = [t["time"] for t in entry["transactions"] if t["status"] == "commit"]
    assert (entry["first_time"], entry["last_time"]) == (min(commits), max(commits))
    assert all(t["gtid"] is None for t in entry["transactions"])


def test_mixed_segment_facts(generated: dict[str, Path]) -> None:
    entry = inspect_file(str(generated[MIXED]))
    assert entry["server_version"] == "PostgreSQL 15" and entry["segment_size"] == 16 << 20
    assert (entry["timeline"], entry["start_lsn"], entry["name_matches"]) == (1, "0/4000000", True)
    assert not entry["truncated"] and not entry["in_use"] and entry["switched"]
    assert [p["name"] for p in entry["restore_points"]] == [
        "before-drop",
        "a restore point name of the maximum length, 63 bytes long......",
    ]
    by_xid = {t["xid"]: t for t in entry["transactions"]}
    assert by_xid[731]["prepared"] and by_xid[731]["status"] == "commit"  # COMMIT PREPARED 'p1'
    assert by_xid[732]["prepared"] and by_xid[732]["status"] == "abort"  # ROLLBACK PREPARED 'p2'
    assert by_xid[734]["prepared"]  # after rels, dropped stats and invalidations
    _, records = walk(generated[MIXED])
    # a record header split across pages, and the 3000-subxact commit spanning pages
    assert any(r.lsn % PAGE > PAGE - 24 for r in records)
    [big] = [r for r in records if r.xid == 738 and decode_xact(r)]
    assert len(big.data) == 12045 and big.lsn // PAGE != big.end_lsn // PAGE


def test_segment_beginning_with_a_continuation(generated: dict[str, Path]) -> None:
    data = generated[CONTINUED].read_bytes()
    assert struct.unpack_from("<H", data, 2)[0] & 1  # XLP_FIRST_IS_CONTRECORD
    _, records = walk(generated[CONTINUED])
    assert records[0].lsn > 0x6000000 + struct.unpack_from("<I", data, 16)[0]
    points = [p for r in records if (p := decode_restore_point(r))]
    assert [p.name for p in points] == ["after the big messages"]


def test_first_segment_of_a_new_timeline(generated: dict[str, Path]) -> None:
    """Its pages keep timeline 1 (copied from the parent): the name's timeline is reported."""
    entry = inspect_file(str(generated[TLI2]))
    assert (entry["timeline"], entry["page_timeline"], entry["name_matches"]) == (2, 1, True)
    history = inspect_file(str(GEN / "00000002.history"))
    [switch] = history["entries"]
    assert switch["parent_timeline"] == 1 and switch["reason"] == 'at restore point "before-drop"'
    [point] = [p for p in entry["restore_points"] if p["name"] == "before-drop"]
    later = [t for t in entry["transactions"] if lsn(t["position"]) > lsn(switch["switch_lsn"])]
    assert lsn(point["position"]) < lsn(switch["switch_lsn"]) and len(later) == 1


def test_verify_off_reads_the_same_records(generated: dict[str, Path]) -> None:
    _, checked = walk(generated[CONTINUED])
    with generated[CONTINUED].open("rb") as f:
        assert list(iter_records(f, CONTINUED, verify=False)) == checked


# --- where valid WAL ends -------------------------------------------------------------------------


def test_partial_copy_ends_inside_a_record(generated: dict[str, Path], tmp_path: Path) -> None:
    full = inspect_file(str(generated[MIXED]))
    cut = tmp_path / f"{MIXED}.partial"
    cut.write_bytes(generated[MIXED].read_bytes()[: 9 * PAGE + 100])
    entry = inspect_file(str(cut))
    assert entry["truncated"] and entry["name_matches"] and not entry["switched"]
    assert entry["end_reason"] == "file ends inside a record at 0/4012000"
    assert 0 < len(entry["transactions"]) < len(full["transactions"])
    assert entry["transactions"] == full["transactions"][: len(entry["transactions"])]


def test_zeroed_tail_and_bad_checksum(generated: dict[str, Path]) -> None:
    data = bytearray(generated[MIXED].read_bytes())
    reader, records = walk(generated[MIXED])
    [big] = [r for r in records if len(r.data) == 12045]
    before = records[records.index(big) - 1]
    data[big.end_lsn - 0x4000000 - 10] ^= 0xFF  # in the part on its last page
    bad, kept = walk_bytes(bytes(data))
    assert kept == records[: records.index(big)] and bad.end_lsn == before.end_lsn
    assert bad.end_reason == f"incorrect resource manager data checksum at 0/{big.lsn:X}"
    page = (big.lsn - 0x4000000) // PAGE + 1
    zeroed = bytes(data[: page * PAGE]) + bytes(len(data) - page * PAGE)
    reader, _ = walk_bytes(zeroed)
    assert reader.end_reason == f"zeroed page at 0/{0x4000000 + page * PAGE:X}"


def test_checksummed_record_that_does_not_decode(
    generated: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(generated[MIXED].read_bytes())
    _, records = walk(generated[MIXED])
    commit = next(r for r in records if decode_xact(r) and len(r.data) == 34)
    at = commit.lsn - 0x4000000
    data[at + 24] = 0x99  # the main data header's block id: no such block
    body = bytes(data[at + 24 : at + 34]) + bytes(data[at : at + 20])
    struct.pack_into("<I", data, at + 20, crc32c(body))
    path = tmp_path / MIXED
    path.write_bytes(bytes(data))
    message = f"{path}: record at 0/{commit.lsn:X}: unexpected block"
    with pytest.raises(FormatError, match=re.escape(message)):
        inspect_file(str(path))


def test_recycled_page_ends_the_walk(generated: dict[str, Path]) -> None:
    data = bytearray(generated[MIXED].read_bytes())
    struct.pack_into("<Q", data, 5 * PAGE + 8, 0x1000000 + 5 * PAGE)  # an older segment's page
    reader, records = walk_bytes(bytes(data))
    assert reader.end_reason == "invalid page header (pageaddr 0/100A000, TLI 1) at 0/400A000"
    assert records and records[-1].end_lsn <= 0x400A000


# --- names that lie, binlogs, garbage -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("000000010000000000000005", "not what the name says"),
        ("000000010000000100000004", "not what the name says"),
        ("00000001.history", "named like a history file"),
        ("000000010000000000000004.00000028.backup", "named like a backup file"),
    ],
)
def test_segment_under_a_wrong_name(
    generated: dict[str, Path], tmp_path: Path, name: str, message: str
) -> None:
    shutil.copyfile(generated[MIXED], tmp_path / name)
    with pytest.raises(FormatError, match=message) as caught:
        inspect_file(str(tmp_path / name))
    assert caught.value.exit_code == 3 and name in caught.value.message


def test_segment_under_another_name_is_inspected(
    generated: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copyfile(generated[MIXED], tmp_path / "copy.wal")
    entry = inspect_file(str(tmp_path / "copy.wal"))
    assert entry["name_matches"] is None and entry["timeline"] == 1


def test_binlogs_through_inspect() -> None:
    maria = inspect_file(str(V / "rust_mysql_common/mariadb-bin.000001"))
    assert maria["kind"] == "binlog" and maria["checksum"] == "crc32"
    assert [(t["gtid"], t["xid"]) for t in maria["transactions"]] == [
        ("0-1-1", 800),
        ("0-1-2", 820),
    ]
    assert all(t["position"] == t["start"] for t in maria["transactions"])
    poc = inspect_file(str(V / "mariadb-poc/domain_id_0/mariadb-repl-bin.000010"))
    assert (poc["gtids_before"], poc["gtids_after"]) == ("0-10-292196", "0-10-292206")
    # UPSTREAM (README table): first and last timestamps 1767181182 and 1767181241
    assert poc["first_time"][:19] == datetime.fromtimestamp(1767181182, UTC).isoformat()[:19]
    assert poc["last_time"][:19] == datetime.fromtimestamp(1767181241, UTC).isoformat()[:19]
    mysql = inspect_file(str(V / "rust-mysql-binlog/bin-log.000001"))
    assert mysql["in_use"] and not mysql["truncated"]
    second = mysql["transactions"][1]
    assert second["gtid"] == "87cee3a4-6b31-11e7-bdfd-0d98d6698870:14918"
    assert second["time"] == "2019-02-15T00:58:11+00:00"  # UPSTREAM: timestamp 1550192291


def test_inspect_files_keeps_order() -> None:
    paths = [str(HIST / "00000002.history"), str(V / "rust_mysql_common/mariadb-bin.000001")]
    assert [f.kind for f in inspect.inspect_files(paths)] == ["timeline-history", "binlog"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x10\xd1\x06",  # a WAL page magic, then nothing
        b"\x10\xd1\x06\x00" + bytes(36),  # a long header with impossible sizes
        bytes(PAGE),
        os.urandom(3000),
        (V / "mysql-binlog-connector-rust/non-binlog").read_bytes(),  # UPSTREAM: "bad magic"
        (V / "mysql-binlog-connector-java/mysql-bin.sakila.gz").read_bytes()[:4096],
        (V / "rust_mysql_common/binlog_truncated_event.000001").read_bytes(),
        b"1\t0/4000000\tsplit\n0\t0/3000000\tbackwards\n",
    ],
)
def test_garbage_is_a_format_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(content)
    with pytest.raises(FormatError) as caught:
        inspect_file(str(path))
    assert "\n" not in caught.value.message and "garbage" in caught.value.message


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read it"):
        inspect_file(str(tmp_path / "nothing"))


# --- fuzzing --------------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _decode_all(data: bytes, verify: bool) -> None:
    try:
        _, records = walk_bytes(data, verify)
        for record in records:
            decode_xact(record)
            decode_restore_point(record)
    except FormatError as exc:
        assert "\n" not in exc.message


def _fuzz_base() -> tuple[bytes, list[tuple[int, int]]]:
    """Pages 7 to 10 of the mixed segment (commits, aborts, 2PC, a restore point) and the
    one-page Transaction/XLOG records in them, as (offset, length)."""
    with (GEN / f"{MIXED}.zst").open("rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read(11 * PAGE)[7 * PAGE :]
    _, records = walk_bytes(data)
    spans = [
        (r.lsn - 0x400E000, len(r.data))
        for r in records
        if r.rmid in (0, 1) and r.lsn // PAGE == (r.end_lsn - 1) // PAGE
    ]
    return data, spans


FUZZ_DATA, FUZZ_RECORDS = _fuzz_base()
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(st.data())
def test_fuzz_record_bodies_with_fixed_checksums(data: st.DataObject) -> None:
    """Mutations inside Transaction/XLOG records, their CRC recomputed: decoders see them."""
    buf = bytearray(FUZZ_DATA)
    offset, size = data.draw(st.sampled_from(FUZZ_RECORDS), label="record")
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        buf[data.draw(st.integers(offset + 24, offset + size - 1), label="at")] = data.draw(
            st.integers(0, 255), label="byte"
        )
    body = bytes(buf[offset + 24 : offset + size]) + bytes(buf[offset : offset + 20])
    struct.pack_into("<I", buf, offset + 20, crc32c(body))
    with time_limit(2.0):
        _decode_all(bytes(buf), verify=True)


@FUZZ
@given(st.data())
def test_fuzz_raw_mutations_without_checksums(data: st.DataObject) -> None:
    buf = bytearray(FUZZ_DATA)
    for _ in range(data.draw(st.integers(1, 12), label="mutations")):
        buf[data.draw(st.integers(0, len(buf) - 1), label="at")] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)), label="cut")
    with time_limit(2.0):
        _decode_all(bytes(buf[:cut]), verify=False)


@FUZZ
@given(data=st.data())
def test_fuzz_inspect_mutated_segment_heads(data: st.DataObject, tmp_path: Path) -> None:
    """The wal-g segment prefix, mutated (mostly in its long header) and truncated."""
    buf = bytearray((WALG / "00000001000000000000007C").read_bytes())
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        at = data.draw(st.one_of(st.integers(0, 47), st.integers(0, len(buf) - 1)), label="at")
        buf[at] = data.draw(st.integers(0, 255), label="byte")
    name = data.draw(st.sampled_from(["00000001000000000000007C", "x.wal", "0000007C.history"]))
    path = tmp_path / name
    path.write_bytes(bytes(buf[: data.draw(st.integers(0, len(buf)), label="cut")]))
    result: dict[str, Any] | None = None
    with time_limit(2.0):
        try:
            result = inspect_file(str(path))
        except FormatError as exc:
            assert "\n" not in exc.message and name in exc.message
    assert result is None or result["kind"] in ("wal", "binlog", "timeline-history")
