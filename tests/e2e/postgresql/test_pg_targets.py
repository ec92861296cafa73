"""Every recovery target, restored beside a real cluster from a file repository.

One cluster per PostgreSQL major version tells the story once (module scope): a full backup;
A, B, the targets, C and a DROP TABLE; more changes and a differential backup; A, B, the
targets, C and a second DROP (of a table in a tablespace of its own), all within the last WAL
segment; then the end. Each test restores a new cluster beside it to one target and checks
DESIGN.md's "test that matters": A and B present, C absent, the dropped table back with the
checksum it had at the target.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from pg_e2e import (
    Cluster,
    Point,
    Site,
    assert_at_point,
    before_target,
    checksum_sql,
    damage,
    destroy_site,
    drop_xid,
    file_site,
    mark,
    markers,
    move_to_tablespace,
    public_dir,
    seed,
    table_exists,
    wait_for,
)
from servers.common import free_port


@dataclass(frozen=True)
class Story:
    site: Site
    full_id: str
    diff_id: str
    points: dict[str, Point]
    keep_checksum: str
    last_segment: str


@pytest.fixture(scope="module")
def story(pg_major: int) -> Iterator[Story]:
    site = file_site(public_dir(), major=pg_major)
    try:
        check = site.ok("check")  # the set-up is right, archive round trip included
        assert check["ok"] is True
        seed(site, ("victim_full", "victim_diff"))
        move_to_tablespace(site, "victim_diff")
        full = site.backup("full")
        on_full = before_target(site, "full", "victim_full")
        damage(site, on_full)
        site.sql("UPDATE keep SET v = md5(v) WHERE id <= 500")
        diff = site.backup("diff")
        on_diff = before_target(site, "diff", "victim_diff")
        segment = str(site.one("SELECT pg_walfile_name(%s::pg_lsn)", on_diff.lsn))
        damage(site, on_diff)
        mark(site, "end")
        last = site.archive_now()
        yield Story(
            site,
            full["id"],
            diff["id"],
            {"full": on_full, "diff": on_diff},
            site.checksum("keep"),
            segment if segment == last else "",
        )
    finally:
        destroy_site(site)


def steps(chain: str) -> list[str]:
    middle = ["apply_diff"] if chain == "diff" else []
    return ["restore_full", *middle, "replay_logs"]


def assert_before(cluster: Cluster, chain: str) -> None:
    """What the earlier part of the story left: the full phase complete when restoring the
    diff phase, nothing of the diff phase when restoring the full one."""
    found = markers(cluster)
    if chain == "diff":
        assert {"full-A", "full-B", "full-C"} <= found
        assert not table_exists(cluster, "victim_full")
    else:
        assert not {m for m in found if m.startswith("diff-")}
        assert table_exists(cluster, "victim_diff")
    assert "end" not in found


def test_diff_targets_lie_in_the_last_segment(story: Story) -> None:
    """The diff phase's targets, C, the DROP and the end share the last archived segment."""
    assert story.last_segment, "the diff phase spread over more than one segment"
    listing = story.site.ok("list")
    assert [b["type"] for b in listing["backups"]] == ["full", "diff"]
    assert listing["backups"][1]["parent"] == story.full_id


@pytest.mark.parametrize("chain", ["full", "diff"])
@pytest.mark.parametrize("kind", ["at", "xid", "lsn", "restore-point"])
def test_restore_to_target(story: Story, chain: str, kind: str) -> None:
    site, point = story.site, story.points[chain]
    target = point.option(kind)
    if kind == "at" and chain == "diff":  # the same instant, written in another time zone
        target = ["--at", point.time.astimezone(timezone(timedelta(hours=-5))).isoformat()]
    plan = site.ok("plan", *target)["plan"]
    assert plan["recoverable"] is True
    assert [s["action"] for s in plan["steps"]] == steps(chain)
    assert plan["target"]["inclusive"] is True
    with site.restore(*target) as (doc, cluster):
        assert doc["recovered_from_backup"] == story.full_id
        assert doc["differential"] == (story.diff_id if chain == "diff" else None)
        assert_at_point(cluster, point)
        assert_before(cluster, chain)
        if chain == "diff":  # the victim's tablespace came back inside the data directory
            location = cluster.one(
                "SELECT pg_tablespace_location(reltablespace) FROM pg_class "
                "WHERE relname = 'victim_diff'"
            )
            assert location.startswith("pg_tblspc/")
        if kind == "xid":
            status = cluster.one("SELECT txid_status(%s)", point.xid)
            assert status == "committed"
            assert doc["reached"]["xid"] == point.xid  # the last transaction replayed
        if kind == "at":
            assert datetime.fromisoformat(doc["point_in_time"]) <= point.time


@pytest.mark.parametrize("chain", ["full", "diff"])
def test_exclusive_on_the_drop_found_with_events(story: Story, chain: str) -> None:
    """The quick start: find the DROP with ``pitr events --grep DROP``, recover to just
    before it: C (committed before the DROP) is kept, the table is back."""
    site, point = story.site, story.points[chain]
    xid = drop_xid(site, point.victim)
    if chain == "full":  # with --rows, what B's transaction did, read from the WAL itself
        events = site.ok("events", "--rows", "--grep", "INSERT public.markers")["events"]
        (b,) = [e for e in events if e["xid"] == point.xid]
        assert b["summary"] == "INSERT public.markers: 1 rows"
    plan = site.ok("plan", "--xid", str(xid), "--exclusive")["plan"]
    assert plan["target"] == {"type": "xid", "value": str(xid), "inclusive": False}
    assert [s["action"] for s in plan["steps"]] == steps(chain)
    with site.restore("--xid", str(xid), "--exclusive") as (_doc, cluster):
        tag = point.tag
        assert {m for m in markers(cluster) if m.startswith(tag)} == {
            f"{tag}-A",
            f"{tag}-B",
            f"{tag}-C",
        }
        assert cluster.one(checksum_sql(point.victim)) == point.checksum
        assert_before(cluster, chain)


def test_latest_has_everything(story: Story) -> None:
    """``--latest``, with a relative --config (the restore_command must still find it) and
    the original's unix socket directory gone, as on another machine (the restored copy
    must not depend on it)."""
    site = story.site
    sockets = site.server.socket_dir
    away = sockets.with_name("sock-away")
    with contextlib.ExitStack() as stack:
        sockets.rename(away)
        try:
            restored = site.restore("--latest", config="pitr.toml", cwd=site.base)
            doc, cluster = stack.enter_context(restored)
        finally:
            away.rename(sockets)
        assert doc["differential"] == story.diff_id
        found = markers(cluster)
        for tag in ("full", "diff"):
            assert {f"{tag}-A", f"{tag}-B", f"{tag}-C"} <= found
            assert not table_exists(cluster, f"victim_{tag}")
        assert "end" in found
        assert cluster.one(checksum_sql("keep")) == story.keep_checksum


def test_restore_without_port_leaves_a_startable_directory(story: Story) -> None:
    """``restore --to`` alone: the directory is ready for the DBA to start (PostgreSQL then
    replays with pitr's restore_command); with a differential, every file comes once from the
    backup holding its newest copy."""
    site, point = story.site, story.points["diff"]
    dest = site.base / f"restored-{free_port()}"
    try:
        done = site.run("restore", *point.option("xid"), "--to", str(dest), "--json")
        assert done.returncode == 0, str(done)
        doc = done.json()["recovery"]
        assert doc["status"] == "RESTORED" and doc["differential"] == story.diff_id
        assert doc["reached"] == {"lsn": None, "xid": None, "gtid": None}  # not started yet
        assert (dest / "recovery.signal").exists() and (dest / "backup_label").exists()
        assert not (dest / "pitr-restore-in-progress").exists()
        cluster = Cluster(dest, free_port(), site.server.bindir)
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(site.server.bindir / "pg_ctl"), "-D",
             str(dest), "-w", "-o", f"-p {cluster.port}", "-l", str(dest / "manual.log"), "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        cluster.track()
        wait_for(lambda: cluster.one("SELECT NOT pg_is_in_recovery()"), 120, "promotion")
        assert_at_point(cluster, point)
    finally:
        Cluster(dest, 0, site.server.bindir).stop()
        shutil.rmtree(dest, ignore_errors=True)
