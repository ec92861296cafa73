"""The pg_waldump indexer on lines captured from PostgreSQL 15 (the long catcache lists of
the invalidation messages shortened): what each commit created, dropped or rewrote, and how
``pitr events`` words it."""

from __future__ import annotations

from datetime import UTC, datetime

from pitr.catalog.model import Transaction
from pitr.engines.postgresql.events import describe
from pitr.engines.postgresql.waldump import commit_summary, parse

HEAD = "len (rec/tot):     42/    42, tx:"


def storage(xid: int, lsn: str, path: str) -> str:
    return f"rmgr: Storage     {HEAD} {xid:>10}, lsn: {lsn}, prev 0/01500C40, desc: CREATE {path}"


def commit(xid: int, lsn: str, tail: str) -> str:
    return (
        f"rmgr: Transaction len (rec/tot):    405/   405, tx: {xid:>10}, lsn: {lsn}, "
        f"prev 0/01525700, desc: COMMIT 2026-12-05 12:34:20.437737 UTC{tail}"
    )


#: CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, t text): the table, its
#: TOAST table and index, its primary key.
CREATE_TABLE = [
    storage(724, "0/01500C70", "base/5/16385"),
    storage(724, "0/015176D8", "base/5/16388"),
    storage(724, "0/0151B6B0", "base/5/16389"),
    "rmgr: XLOG        len (rec/tot):     49/   137, tx:        724, lsn: 0/0151F548, "
    "prev 0/0151F500, desc: FPI , blkref #0: rel 1663/5/16389 blk 0 FPW",
    storage(724, "0/0151F890", "base/5/16390"),
    commit(724, "0/015257C0", "; inval msgs: catcache 36 catcache 35 snapshot 2608 relcache "
           "16385 relcache 16388 relcache 16389 relcache 16388 snapshot 2608 relcache 16390"),
]  # fmt: skip
#: TRUNCATE shop.orders: four new files, the old ones unlinked at commit.
TRUNCATE = [
    storage(726, "0/0152D368", "base/5/16396"),
    storage(726, "0/0152D510", "base/5/16397"),
    storage(726, "0/0152D6C0", "base/5/16398"),
    storage(726, "0/0152D8D8", "base/5/16399"),
    commit(726, "0/0152DAD0", "; rels: base/5/16389 base/5/16390 base/5/16388 base/5/16385; "
           "inval msgs: catcache 55 catcache 54 relcache 16385 relcache 16388 relcache 16390 "
           "relcache 16389"),
]  # fmt: skip
#: VACUUM FULL shop.orders: a transient relation (dropped again) and a new index file.
VACUUM_FULL = [
    storage(728, "0/01530818", "base/5/16403"),
    storage(728, "0/01531FF0", "base/5/16406"),
    storage(728, "0/01532B98", "base/5/16407"),
    storage(728, "0/01535D98", "base/5/16408"),
    commit(728, "0/01536650", "; rels: base/5/16396 base/5/16397 base/5/16399 base/5/16398; "
           "dropped stats: 2/5/16407 2/5/16406 2/5/16403; inval msgs: snapshot 2608 relcache "
           "16403 relcache 16406 relcache 16407 relcache 16385 relcache 16388 relcache 16390"),
]  # fmt: skip
#: BEGIN; SAVEPOINT a; CREATE TABLE sub1 (a int); RELEASE a; COMMIT
IN_SUBTRANSACTION = [
    storage(731, "0/0153E420", "base/5/16417"),
    commit(730, "0/015411E0", "; subxacts: 731; inval msgs: snapshot 2608 relcache 16417"),
]
#: CREATE UNLOGGED TABLE u1 (a int): only its init fork is logged.
UNLOGGED = [
    storage(732, "0/015413B0", "base/5/16420_init"),
    commit(732, "0/01544638", "; inval msgs: snapshot 2608 relcache 16420"),
]
#: CREATE INDEX ON t3 (a): the file is created before the transaction has an xid.
INDEX_WITHOUT_XID = [
    storage(0, "0/015447D0", "base/5/16423"),
    commit(733, "0/01546E70", "; inval msgs: relcache 16423 relcache 16400 snapshot 2608"),
]
#: CREATE DATABASE db2: the new database's files (system catalogs, their forks).
CREATE_DATABASE = [
    storage(734, "0/0156C390", "base/16424/2619_fsm"),
    storage(734, "0/016FDD80", "base/16424/112"),
    commit(734, "0/01898C00", "; inval msgs: catcache 21 snapshot 1262"),
]
#: DROP TABLE shop.orders
DROP = [
    commit(735, "0/018A0000", "; rels: base/5/16411 base/5/16414; dropped stats: 2/5/16385 "
           "2/5/16414; inval msgs: relcache 16385 relcache 16414"),
]  # fmt: skip
FALLBACK = datetime(2026, 12, 5, tzinfo=UTC)


def summaries(lines: list[str]) -> dict[int, str]:
    return {t.xid or 0: t.summary for t in parse("\n".join(lines), FALLBACK).transactions}


def test_create_truncate_and_drop() -> None:
    found = summaries(CREATE_TABLE + TRUNCATE + DROP)
    assert found == {
        724: "create=16385,16388,16389,16390",
        726: "rewrite=16389,16390,16388,16385",
        735: "drop=16385,16414",
    }


def test_a_rewrite_creates_nothing() -> None:
    """VACUUM FULL's transient relation is dropped in the same commit; its new files are not
    relations of their own."""
    assert summaries(VACUUM_FULL) == {728: "drop=16407,16406,16403"}


def test_created_in_a_subtransaction_or_unlogged() -> None:
    assert summaries(IN_SUBTRANSACTION + UNLOGGED) == {730: "create=16417", 732: "create=16420"}


def test_not_reported_as_created() -> None:
    """A file created before the transaction had an xid; a new database's system catalogs."""
    assert summaries(INDEX_WITHOUT_XID + CREATE_DATABASE) == {733: "", 734: ""}


def test_commit_summary_without_created_files() -> None:
    assert commit_summary("; inval msgs: relcache 16385", ()) == ""
    assert commit_summary("; inval msgs: relcache 16385", ["16385"]) == "create=16385"
    assert commit_summary("; inval msgs: relcache 100", ["100"]) == ""  # a system catalog


def words(summary: str, names: dict[str, str], relations: dict[str, str]) -> str:
    tx = Transaction(FALLBACK, "0/0", 0, 1, None, None, summary)
    return describe(tx, names, None, relations)


def test_events_name_created_tables_from_a_later_backup() -> None:
    names = {"16385": "shop.orders"}
    relations = {**names, "16388": "shop.orders", "16389": "shop.orders", "16390": "shop.orders"}
    summary = "create=16385,16388,16389,16390"
    assert words(summary, names, relations) == "CREATE TABLE shop.orders"
    assert words(summary, {}, {}) == (
        "CREATE relations 16385, 16388, 16389, 16390 (not named in any backup)"
    )
    # An index a backup knows as a part of its table is not a table created.
    assert words("create=16390", names, relations) == "COMMIT"
    assert words("drop=16385 create=16417", names, relations) == (
        "DROP TABLE shop.orders; CREATE relation 16417 (not named in any backup)"
    )
    assert words("rewrite=16389,16390,16388,16385", names, relations) == (
        "TRUNCATE or rewrite of shop.orders"
    )
