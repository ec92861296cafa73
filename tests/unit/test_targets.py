"""Recovery targets: one per run, valid for the engine, values parsed strictly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.domain.positions import format_lsn, parse_lsn
from pitr.domain.targets import parse_target
from pitr.errors import UsageError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_time_with_offset_becomes_utc() -> None:
    t = parse_target("postgresql", at="2026-03-04 12:00:05.250+01:00", now=NOW)
    assert t.kind == "time" and t.inclusive
    assert t.time == datetime(2026, 3, 4, 11, 0, 5, 250000, tzinfo=UTC)
    assert t.to_dict() == {
        "type": "time",
        "value": "2026-03-04T11:00:05.250000+00:00",
        "inclusive": True,
    }


def test_z_suffix() -> None:
    t = parse_target("mariadb", at="2026-03-04T00:00:00Z", now=NOW)
    assert t.time == datetime(2026, 3, 4, tzinfo=UTC)


def test_naive_time_needs_a_zone() -> None:
    with pytest.raises(UsageError, match="no UTC offset"):
        parse_target("postgresql", at="2026-03-04 12:00:00", now=NOW)
    t = parse_target("postgresql", at="2026-03-04 12:00:00", timezone="Europe/Paris", now=NOW)
    assert t.time == datetime(2026, 3, 4, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", "", "12:00"])
def test_garbage_time(text: str) -> None:
    with pytest.raises(UsageError):
        parse_target("postgresql", at=text, now=NOW)


def test_future_time() -> None:
    with pytest.raises(UsageError, match="in the future"):
        parse_target("postgresql", at="2027-01-01T00:00:00Z", now=NOW)


def test_exactly_one_target() -> None:
    with pytest.raises(UsageError, match="no recovery target"):
        parse_target("postgresql")
    with pytest.raises(UsageError, match="several recovery targets"):
        parse_target("postgresql", xid="100", latest=True)


@pytest.mark.parametrize(
    ("engine", "option", "value"),
    [
        ("postgresql", "gtid", "0-1-42"),
        ("postgresql", "position", "mysql-bin.000001:4"),
        ("mariadb", "lsn", "0/16533E18"),
        ("mariadb", "xid", "1234"),
        ("mysql", "restore_point", "x"),
    ],
)
def test_target_kinds_per_engine(engine: str, option: str, value: str) -> None:
    with pytest.raises(UsageError, match="is not a target for"):
        parse_target(engine, **{option: value})  # type: ignore[arg-type]


def test_timeline_only_for_postgresql() -> None:
    with pytest.raises(UsageError, match="PostgreSQL only"):
        parse_target("mariadb", latest=True, timeline="2")
    assert parse_target("postgresql", latest=True, timeline="latest").timeline == "latest"
    assert parse_target("postgresql", latest=True, timeline="3").timeline == 3
    with pytest.raises(UsageError):
        parse_target("postgresql", latest=True, timeline="two")


def test_exclusive() -> None:
    t = parse_target("postgresql", xid="1234", exclusive=True)
    assert not t.inclusive
    assert t.describe() == "--xid 1234 (exclusive)"
    for options in ({"latest": True}, {"restore_point": "x"}):
        with pytest.raises(UsageError, match="--exclusive cannot"):
            parse_target("postgresql", exclusive=True, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["abc", "-5", "1", "2", "4294967296", "12.5"])
def test_bad_xids(text: str) -> None:
    with pytest.raises(UsageError):
        parse_target("postgresql", xid=text)


@pytest.mark.parametrize("text", ["0/16533E18", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/0"])
def test_lsn_round_trip(text: str) -> None:
    assert format_lsn(parse_lsn(text)) == text


@pytest.mark.parametrize("text", ["16533E18", "0/", "/1", "G/1", "123456789/0", "0/1/2"])
def test_bad_lsns(text: str) -> None:
    with pytest.raises(UsageError, match="not a WAL location"):
        parse_lsn(text)


@given(st.integers(0, 2**64 - 1))
def test_lsn_text_round_trips(value: int) -> None:
    assert parse_lsn(format_lsn(value)) == value


def test_restore_point_names() -> None:
    assert parse_target("postgresql", restore_point="before upgrade").name == "before upgrade"
    with pytest.raises(UsageError):
        parse_target("postgresql", restore_point="x" * 64)


def test_gtids() -> None:
    assert parse_target("mariadb", gtid="0-1-42,1-2-7").gtid == "0-1-42,1-2-7"
    uuid = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
    assert parse_target("mysql", gtid=f"{uuid}:23").gtid == f"{uuid.lower()}:23"
    assert parse_target("mysql", gtid=f"{uuid}:Batch_7:5").gtid == f"{uuid.lower()}:batch_7:5"
    for engine, bad in [("mariadb", "0-1"), ("mariadb", "a-b-c"), ("mysql", "nope:1")]:
        with pytest.raises(UsageError):
            parse_target(engine, gtid=bad)


@pytest.mark.parametrize("engine", ["mariadb", "mysql"])
@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_gtid_is_bad_input(engine: str, blank: str) -> None:
    with pytest.raises(UsageError, match="--gtid: empty"):
        parse_target(engine, gtid=blank)


def test_positions() -> None:
    t = parse_target("mariadb", position="mysql-bin.000042:1234")
    assert t.position == ("mysql-bin.000042", 1234)
    assert t.value == "mysql-bin.000042:1234"
    for bad in ["mysql-bin.000042", "mysql-bin.000042:x", ":12", "a:1", "/etc/passwd:100"]:
        with pytest.raises(UsageError):
            parse_target("mariadb", position=bad)


@pytest.mark.parametrize("engine", ["mariadb", "mysql"])
def test_an_exclusive_position_is_refused(engine: str) -> None:
    """A position is where replay stops, between two transactions: nothing to exclude."""
    with pytest.raises(UsageError, match="--exclusive cannot be combined with --position") as err:
        parse_target(engine, position="mysql-bin.000042:1234", exclusive=True)
    assert err.value.exit_code == 2
    assert "pitr events" in (err.value.hint or "")
