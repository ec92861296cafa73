"""``pitr events`` on PostgreSQL: what each commit created, truncated or dropped, named from the
relation maps of the backups; ``--from``/``--to`` select by commit time.

The story: ``shop.orders`` created before the full backup (the full names it); after it, a
TRUNCATE of ``shop.orders``, a new ``shop.later`` (no backup names it yet), the DROP of
``shop.orders``; then a differential, which names ``shop.later``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pg_e2e import Site, destroy_site, file_site, public_dir, wait_for


def in_transaction(site: Site, *statements: str) -> tuple[int, datetime]:
    """Run ``statements`` in one transaction: its xid, and a moment after its commit."""
    with site.server.connect() as conn:
        with conn.transaction():
            xid = int(conn.execute("SELECT txid_current()").fetchall()[0][0])
            for sql in statements:
                conn.execute(sql)
        moment = conn.execute("SELECT clock_timestamp()").fetchall()[0][0]
    wait_for(lambda: site.one("SELECT clock_timestamp()") > moment, 5, "the clock")
    return xid, moment


def by_xid(events: list[dict[str, Any]]) -> dict[int, str]:
    return {int(e["xid"]): e["summary"] for e in events}


def test_created_truncated_dropped_and_time_window(pg_major: int) -> None:
    site = file_site(public_dir(), major=pg_major)
    try:
        create, _ = in_transaction(
            site,
            "CREATE SCHEMA shop",
            "CREATE TABLE shop.orders (id int PRIMARY KEY, note text)",
            "INSERT INTO shop.orders SELECT g, md5(g::text) FROM generate_series(1, 100) g",
        )
        site.backup("full")
        start = site.one("SELECT clock_timestamp()")
        truncate, _ = in_transaction(site, "TRUNCATE shop.orders")
        later, end = in_transaction(site, "CREATE TABLE shop.later (id int PRIMARY KEY, t text)")
        drop, _ = in_transaction(site, "DROP TABLE shop.orders")
        site.archive_now()
        later_oid = int(site.one("SELECT 'shop.later'::regclass::oid"))

        found = by_xid(site.ok("events")["events"])
        assert found[create] == "CREATE TABLE shop.orders"
        assert found[truncate] == "TRUNCATE or rewrite of shop.orders"
        assert found[later].startswith(f"CREATE relations {later_oid}, ")
        assert found[later].endswith(" (not named in any backup)")
        assert found[drop] == "DROP TABLE shop.orders"
        created = site.ok("events", "--grep", "CREATE TABLE shop")["events"]
        assert [e["xid"] for e in created] == [create]

        # The window: both ends inclusive, by commit time.
        window = site.ok("events", "--from", start.isoformat(), "--to", end.isoformat())
        events = window["events"]
        assert by_xid(events) == {truncate: found[truncate], later: found[later]}
        assert all(start <= datetime.fromisoformat(e["time"]) <= end for e in events)
        assert site.ok("events", "--from", end.isoformat(), "--to", end.isoformat())["events"] == []

        # A later backup knows shop.later: the same commit now names it.
        site.backup("diff")
        assert by_xid(site.ok("events")["events"])[later] == "CREATE TABLE shop.later"
    finally:
        destroy_site(site)
