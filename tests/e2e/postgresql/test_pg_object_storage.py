"""The story on object storage: S3 (moto) and OpenStack Swift, the credentials reaching
``archive_command`` and ``restore_command`` through the environment only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pg_e2e import (
    Site,
    assert_at_point,
    before_target,
    damage,
    destroy_site,
    drop_xid,
    make_site,
    mark,
    markers,
    public_dir,
    seed,
)
from servers import MotoServer, SwiftServer


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def s3_site(moto_server: MotoServer) -> Iterator[Site]:
    bucket = moto_server.create_bucket(unique("pitr-pg-e2e"))
    repository = (
        f'url = "s3://{bucket}/prod/pg"\n'
        f'endpoint_url = "{moto_server.endpoint_url}"\n'
        'addressing = "path"\n'
        f'region = "{moto_server.region}"'
    )
    site = make_site(public_dir(), repository, env=moto_server.env())
    try:
        yield site
    finally:
        destroy_site(site)


@pytest.fixture
def swift_site(swift_server: SwiftServer) -> Iterator[Site]:
    repository = f'url = "swift://{unique("pitr-pg-e2e")}/prod/pg"'
    site = make_site(public_dir(), repository, env=swift_server.env())
    try:
        yield site
    finally:
        destroy_site(site)


def test_s3_time_target_on_full_and_differential(s3_site: Site) -> None:
    site = s3_site
    seed(site, ("victim",))
    full = site.backup("full")
    site.sql("UPDATE keep SET v = md5(v) WHERE id <= 500")
    diff = site.backup("diff")
    assert diff["parent"] == full["id"]
    point = before_target(site, "s3", "victim")
    damage(site, point)
    site.archive_now()

    target = ("--at", point.time.isoformat())
    plan = site.ok("plan", *target)["plan"]
    assert [s["action"] for s in plan["steps"]] == ["restore_full", "apply_diff", "replay_logs"]
    with site.restore(*target) as (doc, cluster):
        assert doc["recovered_from_backup"] == full["id"]
        assert doc["differential"] == diff["id"]
        assert datetime.fromisoformat(doc["point_in_time"]) <= point.time
        assert_at_point(cluster, point)
    verified = site.ok("verify")
    assert verified["failed"] == []
    assert verified["verified"] == verified["objects"] > 0


def test_s3_recover_in_place(s3_site: Site) -> None:
    """In place on S3: the newest WAL is secured by recover itself (nothing archived it), the
    data directory set aside, the new timeline archived into the bucket."""
    site = s3_site
    seed(site, ("victim",))
    full = site.backup("full")
    point = before_target(site, "s3", "victim")
    damage(site, point)
    mark(site, "end")
    doc = site.ok("recover", "--at", point.time.isoformat(), "--yes")["recovery"]
    assert doc["recovered_from_backup"] == full["id"]
    assert doc["timeline"] == 2
    assert Path(doc["previous_datadir"]).is_dir()
    assert_at_point(site, point)
    assert "end" not in markers(site)
    site.archive_now()
    latest = site.ok("plan", "--latest")["plan"]
    assert latest["recoverable"] is True
    assert latest["timeline"] == 2


def test_swift_quick_start_story_in_place(swift_site: Site) -> None:
    """Find the DROP with ``events``, plan, recover in place to just before it."""
    site = swift_site
    seed(site, ("victim",))
    full = site.backup("full")
    point = before_target(site, "swift", "victim")
    damage(site, point)
    site.archive_now()

    xid = drop_xid(site, "victim")
    target = ("--xid", str(xid), "--exclusive")
    plan = site.ok("plan", *target)["plan"]
    assert plan["recoverable"] is True
    doc = site.ok("recover", *target, "--yes")["recovery"]
    assert doc["recovered_from_backup"] == full["id"]
    assert doc["previous_datadir"]
    assert {"swift-A", "swift-B", "swift-C"} <= markers(site)
    assert site.checksum(point.victim) == point.checksum
    # The recovered instance archives into Swift too: its new timeline can be followed.
    site.archive_now()
    latest = site.ok("plan", "--latest")["plan"]
    assert latest["recoverable"] is True
    assert latest["timeline"] == 2
