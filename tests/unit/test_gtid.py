"""pitr.domain.gtid: parsing, canonical text, ordering and set algebra (property tests)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.domain.gtid import MariaGtid, MariaGtidPosition, MysqlGtid, MysqlGtidSet
from pitr.errors import UsageError

FAST = settings(max_examples=25, deadline=None)

# --- strategies --------------------------------------------------------------------------------

maria_gtids = st.builds(
    MariaGtid,
    st.integers(0, 2**32 - 1) | st.integers(0, 3),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1) | st.integers(0, 50),
)
positions = st.lists(maria_gtids, max_size=5).map(MariaGtidPosition.from_gtids)

UUIDS = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "3E11FA47-71CA-11E1-9E33-C80AA9429561",
    "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
]
TAGS = ["", "mytag", "Other_1"]
sources = st.tuples(st.sampled_from(UUIDS), st.sampled_from(TAGS))
intervals = st.tuples(st.integers(1, 40), st.integers(0, 6)).map(lambda t: (t[0], t[0] + t[1]))
gtid_sets = st.dictionaries(sources, st.lists(intervals, max_size=4), max_size=4).map(
    MysqlGtidSet.from_mapping
)
mysql_gtids = st.builds(
    MysqlGtid, st.sampled_from(UUIDS), st.sampled_from(TAGS), st.integers(1, 48)
)


def members(s: MysqlGtidSet) -> set[MysqlGtid]:
    return set(s)


# --- MariaDB -----------------------------------------------------------------------------------


def test_maria_parse_and_str() -> None:
    g = MariaGtid.parse("0-1-42")
    assert (g.domain, g.server, g.seq) == (0, 1, 42)
    assert str(g) == "0-1-42"
    pos = MariaGtidPosition.parse(" 1-2-7,0-1-42 ")
    assert str(pos) == "0-1-42,1-2-7"
    assert pos.domains() == (0, 1)
    assert pos.get(1) == MariaGtid(1, 2, 7)
    assert str(MariaGtidPosition.parse("")) == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0-1",
        "0-1-2-3",
        "a-1-2",
        "0--2",
        "-1-2-3",
        "0-1-99999999999999999999999",
        "4294967296-1-1",
    ],
)
def test_maria_gtid_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        MariaGtid.parse(text)


@pytest.mark.parametrize("text", ["0-1-1,0-2-2", "0-1-1,", ",0-1-1", "0-1-1;1-1-1"])
def test_maria_position_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        MariaGtidPosition.parse(text)


def test_maria_position_contains_advance_covers() -> None:
    pos = MariaGtidPosition.parse("0-1-42,1-2-7")
    assert pos.contains(MariaGtid(0, 9, 42))
    assert MariaGtid(0, 1, 41) in pos
    assert not pos.contains(MariaGtid(0, 1, 43))
    assert not pos.contains(MariaGtid(2, 1, 1))
    nxt = pos.advance(MariaGtid(0, 1, 43))
    assert str(nxt) == "0-1-43,1-2-7"
    assert nxt.covers(pos) and not pos.covers(nxt)
    same = MariaGtidPosition.parse(str(pos))
    assert nxt > pos and pos < nxt and pos <= same and not pos < same
    state = MariaGtidPosition.from_state(
        [MariaGtid(0, 7, 12), MariaGtid(0, 1, 28), MariaGtid(1, 1, 1)]
    )
    assert str(state) == "0-1-28,1-1-1"


@FAST
@given(maria_gtids)
def test_maria_gtid_roundtrip(g: MariaGtid) -> None:
    assert MariaGtid.parse(str(g)) == g


@FAST
@given(positions)
def test_maria_position_roundtrip(p: MariaGtidPosition) -> None:
    assert MariaGtidPosition.parse(str(p)) == p


@FAST
@given(positions, maria_gtids)
def test_maria_advance_orders_positions(p: MariaGtidPosition, g: MariaGtid) -> None:
    nxt = p.advance(g)
    assert nxt.contains(g)
    assert set(nxt.domains()) == set(p.domains()) | {g.domain}
    cur = p.get(g.domain)
    if cur is None or g.seq >= cur.seq:
        assert nxt >= p
    assert p.covers(p) and (p <= nxt) == nxt.covers(p)


@FAST
@given(positions, positions, positions)
def test_maria_covers_is_a_partial_order(a: MariaGtidPosition, b: MariaGtidPosition,
                                         c: MariaGtidPosition) -> None:  # fmt: skip
    if a.covers(b) and b.covers(c):
        assert a.covers(c)
    if a.covers(b) and b.covers(a):
        assert {(g.domain, g.seq) for g in a.gtids} == {(g.domain, g.seq) for g in b.gtids}


@FAST
@given(st.lists(maria_gtids, min_size=1, max_size=6))
def test_maria_gtid_order_within_domain(gs: list[MariaGtid]) -> None:
    ordered = sorted(gs)
    for x, y in itertools.pairwise(ordered):
        assert (x.domain, x.seq) <= (y.domain, y.seq)


# --- MySQL -------------------------------------------------------------------------------------


def test_mysql_parse_normalises() -> None:
    s = MysqlGtidSet.parse(
        "3E11FA47-71CA-11E1-9E33-C80AA9429562:7:1-5,\n 3e11fa4771ca11e19e33c80aa9429562:6"
    )
    assert str(s) == "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7"
    tagged = MysqlGtidSet.parse("55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:MyTag:1-2")
    assert str(tagged) == (
        "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13,55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:1-2"
    )
    assert MysqlGtidSet.parse(str(tagged)) == tagged
    assert tagged.intervals("55778904-0299-11f1-b1b8-4ef0c4956feb", "mytag") == ((1, 2),)
    assert MysqlGtidSet.parse("").is_empty()
    g = MysqlGtid.parse("55778904-0299-11f1-b1b8-4ef0c4956feb:MYTAG:2")
    assert str(g) == "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:2" and g in tagged
    assert MysqlGtid.parse("55778904-0299-11f1-b1b8-4ef0c4956feb:14") not in tagged


@pytest.mark.parametrize(
    "text",
    [
        "3e11fa47-71ca-11e1-9e33-c80aa9429562",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:0",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-3",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9223372036854775808",
        "3e11fa47-71ca-11e1-9e33-c80aa942956:1",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1tag:1",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:" + "t" * 33 + ":1",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1,",
        "0-1-2",
    ],
)
def test_mysql_set_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        MysqlGtidSet.parse(text)


@pytest.mark.parametrize("text", ["x:1", "3e11fa47-71ca-11e1-9e33-c80aa9429562:0", "a:b:c:d"])
def test_mysql_gtid_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        MysqlGtid.parse(text)


@FAST
@given(gtid_sets)
def test_mysql_roundtrip(s: MysqlGtidSet) -> None:
    assert MysqlGtidSet.parse(str(s)) == s
    assert MysqlGtidSet.from_gtids(members(s)) == s


@FAST
@given(gtid_sets, gtid_sets, gtid_sets)
def test_mysql_set_laws(a: MysqlGtidSet, b: MysqlGtidSet, c: MysqlGtidSet) -> None:
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert ((a - b) & b).is_empty()
    assert ((a | b) - b).issubset(a)
    assert (a & b).issubset(a) and (a & b).issubset(b)
    assert a.issubset(a | b) and (a - b) <= a and a | b >= b
    assert members(a | b) == members(a) | members(b)
    assert members(a - b) == members(a) - members(b)
    assert members(a & b) == members(a) & members(b)


@FAST
@given(gtid_sets, mysql_gtids)
def test_mysql_contains_matches_members(s: MysqlGtidSet, g: MysqlGtid) -> None:
    assert s.contains(g) == (g in members(s))
    assert s.add(g).contains(g)
    assert members(s.add(g)) == members(s) | {g}
