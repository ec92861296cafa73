"""A DBA's MySQL story, live on MySQL 9.x in a Debian root (pitr installed beside it): clone
backups, binlogs archived and indexed, every target restored beside the instance, events,
inspect, verify, expire — and what must be refused, one line each.

One server tells the story once (module scope): a clone backup; A, B, the targets, C and a
DROP TABLE in the next binlog; a second clone; A, B and the targets two rotations later, C and
a second DROP; the end. Each test restores a new server to one target and checks DESIGN.md's
"test that matters": A and B present, C absent, the dropped table back with its checksum.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from my_e2e import Point, Restored, assert_at_point, damage, drop_event, mark, wait_for
from mysql_e2e import MysqlSite, before_target, mysql_site, seed

from pitr.domain.gtid import MysqlGtid, MysqlGtidSet


@dataclass(frozen=True)
class Story:
    site: MysqlSite
    backups: tuple[str, str]
    points: dict[str, Point]
    keep_checksum: int


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    site = mysql_site(plugin=False)
    try:
        seed(site, ("victim_one", "victim_two"))
        done = site.fails(6, "backup")  # the clone plugin is not installed: nothing happens
        assert "the clone plugin is not installed" in done.error
        assert "INSTALL PLUGIN clone SONAME 'mysql_clone.so'" in done.stderr
        assert site.ok("list")["backups"] == []
        site.sql("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
        first = site.backup("full")
        site.flush()
        conn = site.connect()  # a tagged GTID (8.4+): uuid:batch_7:1
        with conn.cursor() as cur:
            for statement in ("SET gtid_next = 'AUTOMATIC:batch_7'",
                              "INSERT INTO shop.markers (name) VALUES ('tagged')",
                              "SET gtid_next = 'AUTOMATIC'"):  # fmt: skip
                cur.execute(statement)
        conn.close()
        one = before_target(site, "one", "victim_one")
        damage(site, one)
        site.sql(f"UPDATE shop.keep SET v = {'SHA2(v, 256)'} WHERE id <= 100")
        second = site.backup("full")
        site.flush()
        site.flush()
        two = before_target(site, "two", "victim_two")
        site.flush()  # C and the DROP in a later binlog than the target
        damage(site, two)
        mark(site, "end")
        site.flush()
        site.archive()
        yield Story(site, (first["id"], second["id"]), {"one": one, "two": two},
                    site.checksum("keep"))  # fmt: skip
    finally:
        site.destroy()


def assert_reached(doc: dict[str, object], point: Point) -> None:
    """The restored server's GTID set holds the target and nothing of its own server after."""
    reached = MysqlGtidSet.parse(str(doc["reached"]["gtid"]))  # type: ignore[index]
    target = MysqlGtid.parse(point.gtid)
    assert reached.contains(target)
    assert not reached.contains(MysqlGtid(target.uuid, target.tag, target.gno + 1))


def assert_before(restored: Restored, name: str) -> None:
    """What the earlier part of the story left."""
    found = restored.markers()
    if name == "two":
        assert {"one-A", "one-B", "one-C"} <= found and not restored.has_table("victim_one")
    else:
        assert not {m for m in found if m.startswith("two-")}
    assert "end" not in found


def test_the_story_is_archived(story: Story) -> None:
    site = story.site
    listing = site.ok("list")
    assert [b["type"] for b in listing["backups"]] == ["full", "full"]
    (stream,) = listing["logs"]
    assert stream["first"] == "mysql-bin.000001"
    assert site.archive()["archived"] == 0
    site.fails(6, "backup", "--type", "diff")  # the clone method makes full backups only


@pytest.mark.parametrize("name", ["one", "two"])
@pytest.mark.parametrize("kind", ["gtid", "at", "position"])
def test_restore_to_target(story: Story, name: str, kind: str) -> None:
    site, point = story.site, story.points[name]
    target = point.option(kind)
    plan = site.ok("plan", *target)["plan"]
    assert plan["recoverable"] is True
    assert [s["action"] for s in plan["steps"]] == ["restore_full", "replay_logs"]
    with site.restore(*target) as (doc, restored):
        assert doc["recovered_from_backup"] == story.backups[0 if name == "one" else 1]
        assert_reached(doc, point)
        assert_at_point(restored, point)
        assert_before(restored, name)
        if kind == "at":
            assert datetime.fromisoformat(doc["point_in_time"]) <= point.time


def test_exclusive_on_the_drop_found_with_events(story: Story) -> None:
    site, point = story.site, story.points["two"]
    drop = drop_event(site, point.victim)
    target = ["--gtid", drop["gtid"], "--exclusive"]
    plan = site.ok("plan", *target)["plan"]
    assert plan["steps"][-1]["to"] == drop["position"]
    with site.restore(*target) as (_doc, restored):
        assert_at_point(restored, point, with_c=True)
        assert_before(restored, "two")


def test_latest_has_everything(story: Story) -> None:
    site = story.site
    with site.restore("--latest") as (doc, restored):
        assert doc["recovered_from_backup"] == story.backups[1]
        assert MysqlGtidSet.parse(doc["reached"]["gtid"]) == MysqlGtidSet.parse(site.gtid())
        assert {"one-A", "one-B", "one-C", "two-A", "two-B", "two-C", "end"} <= restored.markers()
        assert restored.checksum("keep") == story.keep_checksum


def test_inspect_verify_and_events(story: Story) -> None:
    site = story.site
    events = site.ok("events")["events"]
    assert any(e["summary"] == "DROP TABLE `shop`.`victim_one`" for e in events)
    assert all(e["gtid"] is None or e["gtid"].count(":") >= 1 for e in events)
    binlog = site.server.binlog_dir / story.points["one"].position.split(":")[0]
    uuid = site.last_gtid().split(":")[0]
    assert f'"gtid": "{uuid}:' in site.run("inspect", str(binlog), "--json").stdout
    verified = site.ok("verify")
    assert verified["verified"] >= 2 and verified["failed"] == []


def test_a_tagged_gtid(story: Story) -> None:
    site = story.site
    tagged = f"{site.last_gtid().split(':')[0]}:batch_7:1"
    events = site.ok("events", "--grep", "shop.markers")["events"]
    assert [e["gtid"] for e in events].count(tagged) == 1
    plan = site.ok("plan", "--gtid", tagged.upper().replace("BATCH", "Batch"))["plan"]
    assert plan["recoverable"] and plan["target"]["value"] == tagged
    with site.restore("--gtid", tagged) as (doc, restored):
        assert MysqlGtidSet.parse(doc["reached"]["gtid"]).contains(MysqlGtid.parse(tagged))
        found = restored.markers()
        assert "tagged" in found and "one-A" not in found


def test_bad_input(story: Story) -> None:
    site = story.site
    assert "--gtid: empty" in site.fails(2, "plan", "--gtid", "").error
    assert "--gtid: empty" in site.fails(2, "plan", "--gtid", "  ").error
    assert "not a MySQL GTID" in site.fails(2, "plan", "--gtid", "0-1-5").error
    uuid = site.last_gtid().split(":")[0]
    done = site.fails(4, "plan", "--gtid", f"{uuid}:99999")
    assert "is not in the archived binlogs" in done.error
    file, _pos = story.points["one"].position.split(":")
    site.fails(4, "plan", "--position", f"{file}:5")  # inside the format description event


def test_recover_in_place_then_expire() -> None:
    """recover in place to a GTID: the DROP still in the open binlog is secured first; the
    instance keeps its server_uuid; a new binlog stream and a new clone follow; retention
    expires the old chain."""
    site = mysql_site(managed=True)
    try:
        seed(site, ("orders",))
        full = site.backup("full")
        uuid = str(site.one("SELECT @@server_uuid"))
        point = before_target(site, "x", "orders")
        damage(site, point)
        old_pid = site.server_pid()
        site.fails(2, "recover", "--gtid", "", "--yes")
        done = site.run("recover", "--gtid", point.gtid, "--yes", "--json")
        assert done.returncode == 0, str(done)
        doc = done.json()["recovery"]
        assert doc["status"] == "ACTIVE" and doc["recovered_from_backup"] == full["id"]
        assert_reached(doc, point)
        site.track()
        assert site.server_pid() != old_pid
        assert_at_point(site, point)
        assert str(site.one("SELECT @@server_uuid")) == uuid
        assert drop_event(site, "orders")["gtid"] != point.gtid  # secured before the swap
        mark(site, "after")
        site.flush()
        assert site.archive()["gaps"] == []
        assert len(site.ok("list")["logs"]) == 2
        site.backup("full")
        site.config.write_text(site.config.read_text() + "\n[retention]\nfull = 1\n")
        assert site.ok("expire")["expired_backups"] == [full["id"]]
        with site.restore("--latest") as (_doc, restored):
            assert "after" in restored.markers() and "x-C" not in restored.markers()
    finally:
        site.destroy()


def test_refusals_before_anything_is_done() -> None:
    """gtid_mode off, binlog_format not ROW, too little room for the clone: one line each,
    exit 6, no backup and no copy left."""
    site = mysql_site(extra_args=("--gtid-mode=OFF", "--enforce-gtid-consistency=OFF"))
    small = site.base / "small"
    small.mkdir()
    mounted = False
    try:
        seed(site, ())
        report = site.run("check")
        assert report.returncode != 0 and "gtid_mode is OFF" in report.stdout + report.stderr
        assert "gtid_mode is OFF" in site.fails(6, "backup").error
        site.sql("SET GLOBAL enforce_gtid_consistency = ON")
        for mode in ("OFF_PERMISSIVE", "ON_PERMISSIVE", "ON"):
            site.sql(f"SET GLOBAL gtid_mode = {mode}")
        site.sql("SET GLOBAL binlog_format = 'STATEMENT'")
        assert "binlog_format is STATEMENT" in site.fails(6, "backup").error
        site.sql("SET GLOBAL binlog_format = 'ROW'")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pitr-test", str(small)],
                       check=True)  # fmt: skip
        mounted = True
        site.config.write_text(site.config.read_text() + f'clone_dir = "{small}"\n')
        done = site.fails(6, "backup")
        assert "too little space for a clone backup" in done.error and str(small) in done.error
        assert site.ok("list")["backups"] == [] and not list(small.iterdir())
        assert not list((site.base / "spool").rglob("data"))
    finally:
        if mounted:
            subprocess.run(["umount", str(small)], check=True)
        site.destroy()


def test_follow_ships_closed_and_open_binlogs() -> None:
    """``archive --follow`` on MySQL: closed binlogs as the server rotates, the open one's
    complete transactions within ``follow_interval``; the server dies; the row is restored."""
    site = mysql_site()
    follower = None
    try:
        seed(site, ())
        site.backup("full")
        follower = site.follow()
        mark(site, "closed")
        site.flush()
        mark(site, "open")
        last = site.last_gtid()
        wait_for(lambda: site.run("plan", "--gtid", last).returncode == 0, 30,
                 "the open binlog shipped")  # fmt: skip
        site.server.kill()
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        follower = None
        assert json.loads(out)["archived"] >= 1, err
        with site.restore("--gtid", last) as (_doc, restored):
            assert {"closed", "open"} <= restored.markers()
    finally:
        if follower is not None:
            follower.kill()
            follower.wait()
        site.destroy()
