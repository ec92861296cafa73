"""Block-level incremental backups (docs/postgresql.md, "Incremental backups"), on real servers.

- The story on 15: full → incr → incr with data changed between (a relation created, one
  truncated, one dropped, one cut short by VACUUM, one extended); restored beside to an
  ``--at`` target (full + incr), an ``--xid`` target and ``--latest`` (full + incr + incr), the
  data checked against what the live server held; the incrementals store far less than the full.
- A missing link (a manifest gone) and a damaged one (an object of another size) are refused by
  ``plan`` (exit 4, naming them); a page map that no longer reads back refuses the restore before
  any file is written (exit 8).
- ``expire`` keeps every link a kept backup needs, and only those.
- On every version of ``--pg-versions``: full → incr → restore to an xid after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_e2e import (
    Cluster,
    Site,
    assert_at_point,
    before_target,
    checksum_sql,
    damage,
    fresh_file_site,
    seed,
    table_exists,
)

TABLES = ("keep", "born", "truncme", "shrinkme", "markers")


@pytest.fixture(scope="module")
def story() -> Iterator[Site]:
    with fresh_file_site() as site:
        yield site


def changes_a(site: Site) -> None:
    """A relation created, one truncated (a new file), one dropped, one cut short by VACUUM
    (the same file, shorter), one extended."""
    site.sql(
        "CREATE TABLE born AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g"
    )
    site.sql("TRUNCATE truncme")
    site.sql("INSERT INTO truncme SELECT g, 'after' FROM generate_series(1, 10) g")
    site.sql("DROP TABLE dropme")
    site.sql("DELETE FROM shrinkme WHERE id > 500")
    site.sql("VACUUM shrinkme")
    site.sql("INSERT INTO keep SELECT g, md5(g::text) FROM generate_series(100001, 120000) g")


def live_sums(cluster: Cluster | Site) -> dict[str, str]:
    return {t: str(cluster.sql(checksum_sql(t))[0][0]) for t in TABLES}


def test_full_incr_incr_restored_to_every_target(story: Site) -> None:
    site = story
    seed(site, ("v1", "v2"), rows=20000)
    site.sql(
        "CREATE TABLE truncme AS SELECT g AS id, 'before' AS v FROM generate_series(1, 20000) g"
    )
    site.sql("CREATE TABLE dropme AS SELECT g AS id FROM generate_series(1, 20000) g")
    site.sql(
        "CREATE TABLE shrinkme AS SELECT g AS id, md5(g::text) AS v "
        "FROM generate_series(1, 20000) g"
    )
    full = site.backup("full")
    changes_a(site)
    incr1 = site.backup("incr")
    assert incr1["parent"] == full["id"] and incr1["id"].endswith("-I")
    p1 = before_target(site, "i1", "v1")
    damage(site, p1)
    site.sql("INSERT INTO born SELECT g, md5(g::text) FROM generate_series(3001, 6000) g")
    incr2 = site.backup("incr")
    assert incr2["parent"] == incr1["id"]
    assert incr2["bytes"] < full["bytes"] / 2, (incr2, full)
    p2 = before_target(site, "i2", "v2")
    damage(site, p2)
    site.archive_now()
    listed = {b["id"]: b for b in site.ok("list")["backups"]}
    assert (listed[incr2["id"]]["type"], listed[incr2["id"]]["parent"]) == ("incr", incr1["id"])

    plan = site.ok("plan", "--latest")["plan"]
    actions = [(s["action"], s.get("backup")) for s in plan["steps"]]
    assert actions[:3] == [("restore_full", full["id"]), ("apply_incr", incr1["id"]),
                           ("apply_incr", incr2["id"])]  # fmt: skip
    with site.restore(*p1.option("at")) as (doc, cluster):
        assert doc["increments"] == [incr1["id"]]
        assert_at_point(cluster, p1)
        assert not table_exists(cluster, "dropme")
        assert cluster.one("SELECT count(*) FROM truncme") == 10
    with site.restore(*p2.option("xid")) as (doc, cluster):
        assert doc["increments"] == [incr1["id"], incr2["id"]]
        assert_at_point(cluster, p2)
        assert cluster.one("SELECT count(*) FROM born") == 6000
    with site.restore("--latest") as (doc, cluster):
        assert doc["increments"] == [incr1["id"], incr2["id"]]
        assert live_sums(cluster) == live_sums(site)
        assert not table_exists(cluster, "v2")


def manifest(site: Site, backup_id: str) -> Path:
    assert site.repo_dir is not None
    return next(site.repo_dir.rglob(f"backups/{backup_id}/manifest.json"))


def test_broken_links_are_refused(story: Site) -> None:
    site = story
    incr1, incr2 = [b["id"] for b in site.ok("list")["backups"] if b["type"] == "incr"]
    kept = manifest(site, incr1)
    aside = kept.with_name("manifest.aside")
    kept.rename(aside)
    done = site.fails(4, "plan", "--latest")
    assert f"parent {incr1} is missing" in done.stdout + done.stderr
    aside.rename(kept)
    site.ok("plan", "--latest")
    checked = site.ok("verify", "--backup", incr2)  # its whole chain: full, incr1, incr2
    assert checked["verified"] and checked["objects"] > 2 + 3 + 3, checked

    data = sorted(manifest(site, incr2).parent.glob("data-*"))[0]
    original = data.read_bytes()
    data.write_bytes(original + b"x")
    done = site.fails(4, "plan", "--latest")
    assert data.name in done.stdout + done.stderr
    data.write_bytes(original)

    page_map = next(manifest(site, incr2).parent.glob("pagemap.json*"))
    original = page_map.read_bytes()
    page_map.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    dest = site.base / "never"
    site.fails(8, "restore", "--latest", "--to", str(dest))
    assert not (dest / "PG_VERSION").exists()
    page_map.write_bytes(original)


def test_expire_keeps_the_links_kept_backups_need(story: Site) -> None:
    site = story
    old = [b["id"] for b in site.ok("list")["backups"]]
    full2 = site.backup("full")
    site.sql("INSERT INTO keep SELECT g, md5(g::text) FROM generate_series(200001, 201000) g")
    incr3 = site.backup("incr")
    assert incr3["parent"] == full2["id"]
    with site.config.open("a") as fh:
        fh.write("\n[retention]\nfull = 1\n")
    expired = site.ok("expire")
    assert expired["kept"] == [full2["id"], incr3["id"]], expired
    left = [b["id"] for b in site.ok("list")["backups"]]
    assert left == [full2["id"], incr3["id"]], (old, left)
    site.archive_now()
    with site.restore("--latest") as (doc, cluster):
        assert doc["increments"] == [incr3["id"]]
        assert live_sums(cluster) == live_sums(site)


def test_incremental_on_each_version(pg_major: int) -> None:
    with fresh_file_site(pg_major) as site:
        seed(site, ("v",), rows=5000)
        site.backup("full")
        site.sql("UPDATE keep SET v = md5(v) WHERE id % 50 = 0")
        site.backup("incr")
        point = before_target(site, "x", "v")
        damage(site, point)
        site.archive_now()
        with site.restore(*point.option("xid")) as (doc, cluster):
            assert len(doc["increments"]) == 1
            assert_at_point(cluster, point)
            assert cluster.sql(checksum_sql("keep")) == site.sql(checksum_sql("keep"))


def test_recover_in_place_from_a_chain(story: Site) -> None:
    """The last of the module: ``recover`` puts full + incr back in place of the instance."""
    site = story
    seed_more = "INSERT INTO keep SELECT g, md5(g::text) FROM generate_series(300001, 301000) g"
    site.sql(seed_more)
    site.sql("CREATE TABLE v3 AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g")
    incr4 = site.backup("incr")
    point = before_target(site, "i4", "v3")
    damage(site, point)
    site.archive_now()
    doc = site.ok("recover", *point.option("xid"), "--yes")["recovery"]
    assert doc["increments"][-1] == incr4["id"]
    assert_at_point(site, point)
