"""Every recovery target, restored beside a real MariaDB 10.11 from a file repository.

One server tells the story once (module scope): a full backup; A, B, the targets, C and a
DROP TABLE; more changes and a differential; A, B and the targets in a later binlog than the
differential's, a rotation, C and a second DROP; the end. Each test restores a new server to
one target and checks DESIGN.md's "test that matters": A and B present, C absent, the dropped
table back with the checksum it had at the target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from my_e2e import (
    VERSIONS,
    Point,
    Restored,
    Site,
    assert_at_point,
    before_target,
    damage,
    drop_event,
    file_site,
    mark,
    public_dir,
    root_of,
    seed,
)


@dataclass(frozen=True)
class Story:
    site: Site
    full_id: str
    diff_id: str
    points: dict[str, Point]
    keep_checksum: int


@pytest.fixture(scope="module", params=VERSIONS)
def story(request: pytest.FixtureRequest) -> Iterator[Story]:
    site = file_site(public_dir(), root=root_of(request.param))
    try:
        seed(site, ("victim_full", "victim_diff"))
        full = site.backup("full")
        on_full = before_target(site, "full", "victim_full")
        damage(site, on_full)
        site.sql("UPDATE shop.keep SET v = MD5(v) WHERE id <= 100")
        diff = site.backup("diff")  # its binlog is closed and archived: B lies in the next
        on_diff = before_target(site, "diff", "victim_diff")
        site.flush()  # C and the DROP in a later binlog than the target
        damage(site, on_diff)
        mark(site, "end")
        site.flush()
        assert site.archive()["archived"] == 2
        yield Story(site, full["id"], diff["id"], {"full": on_full, "diff": on_diff},
                    site.checksum("keep"))  # fmt: skip
    finally:
        site.destroy()


def steps(chain: str) -> list[str]:
    return ["restore_full", *(["apply_diff"] if chain == "diff" else []), "replay_logs"]


def assert_before(restored: Restored, chain: str) -> None:
    """What the earlier part of the story left."""
    found = restored.markers()
    if chain == "diff":
        assert {"full-A", "full-B", "full-C"} <= found
        assert not restored.has_table("victim_full")
    else:
        assert not {m for m in found if m.startswith("diff-")}
        assert restored.has_table("victim_diff")
    assert "end" not in found


def test_the_story_is_archived(story: Story) -> None:
    site = story.site
    listing = site.ok("list")
    assert [b["type"] for b in listing["backups"]] == ["full", "diff"]
    assert listing["backups"][1]["parent"] == story.full_id
    (stream,) = listing["logs"]
    assert stream["first"] == "mysql-bin.000001"
    assert site.archive() == {"archived": 0, "already_archived": stream["logs"], "files": [],
                              "gaps": []}  # fmt: skip


@pytest.mark.parametrize("chain", ["full", "diff"])
@pytest.mark.parametrize("kind", ["gtid", "at", "position"])
def test_restore_to_target(story: Story, chain: str, kind: str) -> None:
    site, point = story.site, story.points[chain]
    target = point.option(kind)
    plan = site.ok("plan", *target)["plan"]
    assert plan["recoverable"] is True
    assert [s["action"] for s in plan["steps"]] == steps(chain)
    if chain == "diff":  # the target lies in a later binlog than the differential's position
        replay = plan["steps"][-1]
        assert len(replay["logs"]) >= 2 and replay["from"].split(":")[0] == replay["logs"][0]
    with site.restore(*target) as (doc, restored):
        assert doc["recovered_from_backup"] == story.full_id
        assert doc["differential"] == (story.diff_id if chain == "diff" else None)
        assert doc["reached"]["gtid"] == point.gtid
        assert_at_point(restored, point)
        assert_before(restored, chain)
        if kind == "at":
            assert datetime.fromisoformat(doc["point_in_time"]) <= point.time


@pytest.mark.parametrize("chain", ["full", "diff"])
def test_exclusive_on_the_drop_found_with_events(story: Story, chain: str) -> None:
    """Find the DROP with ``pitr events``, restore to just before it: C is kept too."""
    site, point = story.site, story.points[chain]
    drop = drop_event(site, point.victim)
    assert drop["log"] == drop["position"].split(":")[0] and drop["xid"] is None
    target = ["--gtid", drop["gtid"], "--exclusive"]
    plan = site.ok("plan", *target)["plan"]
    assert plan["target"] == {"type": "gtid", "value": drop["gtid"], "inclusive": False}
    assert plan["steps"][-1]["to"] == drop["position"]
    with site.restore(*target) as (_doc, restored):
        assert_at_point(restored, point, with_c=True)
        assert_before(restored, chain)


def test_latest_has_everything(story: Story) -> None:
    site = story.site
    with site.restore("--latest") as (doc, restored):
        assert doc["differential"] == story.diff_id
        assert doc["reached"]["gtid"] == site.gtid()
        found = restored.markers()
        for tag in ("full", "diff"):
            assert {f"{tag}-A", f"{tag}-B", f"{tag}-C"} <= found
            assert not restored.has_table(f"victim_{tag}")
        assert "end" in found
        assert restored.checksum("keep") == story.keep_checksum


def test_events_window(story: Story) -> None:
    site, point = story.site, story.points["diff"]
    events = site.ok("events", "--from", point.time.isoformat())["events"]
    assert events and all(e["time"] >= point.time.isoformat()[:19] for e in events)
    summaries = [e["summary"] for e in events]
    assert "INSERT shop.markers: 1 rows" in summaries
    assert "DROP TABLE `shop`.`victim_diff`" in summaries
    text = site.run("events", "--grep", "victim_diff").stdout
    assert "DROP TABLE `shop`.`victim_diff`" in text and "0-1-" in text
