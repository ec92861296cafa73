"""The MariaDB story on object storage: S3 (moto) and the whole story on Swift — backups,
binlogs archived continuously with ``archive --follow``, verify, restore to a GTID and to a
time, latest."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time

from my_e2e import (
    PITR,
    Site,
    assert_at_point,
    before_target,
    damage,
    drop_event,
    mark,
    public_dir,
    seed,
    wait_for,
)
from servers import MotoServer, SwiftServer


def test_s3_story(moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket(f"pitr-my-{secrets.token_hex(4)}")
    repository = (f'url = "s3://{bucket}/mariadb"\nendpoint_url = "{moto_server.endpoint_url}"\n'
                  'region = "us-east-1"\naddressing = "path"\ncompression = "none"')  # fmt: skip
    site = Site(public_dir(), repository, env=moto_server.env())
    try:
        seed(site, ("orders",))
        site.backup("full")
        point = before_target(site, "s3", "orders")
        damage(site, point)
        mark(site, "end")
        site.flush()
        site.archive()
        assert site.ok("verify")["failed"] == []
        drop = drop_event(site, "orders")
        with site.restore("--gtid", drop["gtid"], "--exclusive") as (_doc, restored):
            assert_at_point(restored, point, with_c=True)
        with site.restore(*point.option("gtid")) as (_doc, restored):
            assert_at_point(restored, point)
    finally:
        site.destroy()


def _follow(site: Site) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PITR), "--config", str(site.config), "archive", "--follow", "--json"],
        cwd=site.base, env=site.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _archived(site: Site) -> int:
    return sum(s["logs"] for s in site.ok("list")["logs"])


def test_swift_story_with_follow(swift_server: SwiftServer) -> None:
    """Full, follow the binlogs, differential, the damage, restore on Swift."""
    container = f"pitr-my-{secrets.token_hex(4)}"
    site = Site(public_dir(), f'url = "swift://{container}/mariadb"', env=swift_server.env())
    follower = None
    try:
        seed(site, ("victim",))
        full = site.backup("full")
        archived = _archived(site)
        follower = _follow(site)
        mark(site, "followed")
        site.flush()  # closed: the follower ships it without `pitr archive`
        wait_for(lambda: _archived(site) > archived, 60, "the follower to ship the binlog")
        site.sql("UPDATE shop.keep SET v = MD5(v) WHERE id <= 10")
        follower.send_signal(signal.SIGTERM)  # backups need the instance lock
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        result = json.loads(out)
        assert result["stopped_by"] == "signal" and result["archived"] >= 1
        follower = None
        diff = site.backup("diff")
        point = before_target(site, "sw", "victim")
        damage(site, point)
        site.flush()
        follower = _follow(site)
        wait_for(lambda: bool(site.run("events", "--grep", "victim", "--json").stdout.count(
            "DROP TABLE")), 60, "the DROP to be shipped")  # fmt: skip
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=60)
        follower = None
        listing = site.ok("list")
        assert [b["id"] for b in listing["backups"]] == [full["id"], diff["id"]]
        with site.restore(*point.option("at")) as (doc, restored):
            assert doc["differential"] == diff["id"]
            assert_at_point(restored, point)
            assert "followed" in restored.markers()
    finally:
        if follower is not None:
            follower.kill()
            follower.wait()
        site.destroy()


def test_follow_is_bounded(swift_server: SwiftServer) -> None:
    """--for SECONDS ends a follower on its own; what it finished is archived."""
    container = f"pitr-my-{secrets.token_hex(4)}"
    site = Site(public_dir(), f'url = "swift://{container}/m"', env=swift_server.env())
    try:
        seed(site, ())
        started = time.monotonic()
        done = site.run("archive", "--follow", "--for", "2", "--json")
        assert done.returncode == 0, str(done)
        assert 2 <= time.monotonic() - started < 30
        assert done.json()["stopped_by"] == "time limit"
    finally:
        site.destroy()
