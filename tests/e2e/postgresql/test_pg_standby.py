"""Backups taken on a streaming standby (docs/postgresql.md, "Backups from a standby"), on every
PostgreSQL version: a full and a second backup (a differential, or a block-level incremental:
the parameter) copied from the
standby while the primary only switches WAL, restored beside to a time after both and to the
latest WAL, the data checked each time (``--xid`` and the other targets of standby backups:
test_pg_standby_cases.py). The primary archives nothing: all the WAL comes from
the standby's own archiving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_e2e import assert_at_point, before_target, damage, markers, table_exists
from standby_e2e import Pair, manifests, standby_pair


@pytest.fixture(scope="module")
def pair(pg_major: int) -> Iterator[Pair]:
    with standby_pair(pg_major) as pair:
        pair.primary.sql(
            "CREATE TABLE markers (name text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
        )
        yield pair


def victim(pair: Pair, name: str) -> None:
    pair.primary.sql(
        f"CREATE TABLE {name} AS SELECT g AS id, md5(g::text || %s) AS v FROM "
        "generate_series(1, 2000) g",
        name,
    )
    pair.primary.sql(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")


@pytest.mark.parametrize("second", ["diff", "incr"])
def test_backups_from_the_standby_restore_to_each_target(pair: Pair, second: str) -> None:
    site = pair.site
    table = f"{second}_victim"
    victim(pair, table)
    full = site.backup("full")
    label = next(m for m in manifests(site) if m["id"] == full["id"])["engine_meta"]
    assert "BACKUP FROM: standby" in label["backup_label"]
    site.sql(f"UPDATE {table} SET v = md5(v) WHERE id % 3 = 0")  # for the second to carry
    later = site.backup(second)
    assert later["parent"] == full["id"]
    point = before_target(site, second, table)
    damage(site, point)
    site.sql("INSERT INTO markers (name) VALUES (%s)", f"{second}-last")
    pair.archive_now()

    with site.restore(*point.option("at")) as (doc, cluster):
        applied = (doc["recovered_from_backup"], doc["differential"], doc["increments"])
        if second == "diff":
            assert applied == (full["id"], later["id"], [])
        else:
            assert applied == (full["id"], None, [later["id"]])
        assert_at_point(cluster, point)
    with site.restore("--latest") as (doc, cluster):
        assert f"{second}-last" in markers(cluster)
        assert not table_exists(cluster, table)
