"""The MariaDB story on object storage: S3 (moto) and the whole story on Swift — backups,
binlogs archived continuously with ``archive --follow`` (a backup taken while it runs), verify,
restore to a GTID and to a time, latest; and a follower beside a cron ``pitr archive`` that
ships (and purges) the same binlogs meanwhile."""

from __future__ import annotations

import json
import os
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
    file_site,
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
        diff = site.backup("diff")  # the follower holds a lock of its own: backups still run
        point = before_target(site, "sw", "victim")
        damage(site, point)
        site.flush()
        wait_for(lambda: bool(site.run("events", "--grep", "victim", "--json").stdout.count(
            "DROP TABLE")), 60, "the DROP to be shipped")  # fmt: skip
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        result = json.loads(out)
        assert result["stopped_by"] == "signal" and result["archived"] >= 2
        assert result["gaps"] == []
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


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True,
                           text=True)  # fmt: skip
    return [int(line) for line in found.stdout.split()]


def test_follow_beside_a_cron_archive() -> None:
    """While a follower is stalled (SIGSTOP), cron's ``pitr archive`` ships binlogs and they
    are purged. The follower, resumed, neither uploads those again (same objects, same inode)
    nor reports them as a gap when its copy restarts past them."""
    site = file_site(public_dir())
    follower = None
    try:
        seed(site, ())
        site.backup("full")
        follower = _follow(site)
        spool = site.base / "spool" / "main" / "binlog"
        wait_for(lambda: spool.is_dir() and any(spool.iterdir()), 60, "the binlog copy")

        def caught_up() -> bool:  # only the open binlog is left in the spool
            names = [p.name for p in spool.iterdir() if not p.name.startswith(".")]
            return names == [str(site.sql("SHOW BINARY LOGS")[-1][0])]

        # 1. the follower stalls; cron archives the binlogs its copy still receives
        follower.send_signal(signal.SIGSTOP)
        for n in range(2):
            mark(site, f"stalled-{n}")
            site.flush()
        assert site.archive()["archived"] == 2
        objects = {p: p.stat().st_ino for p in site.repo_dir.glob("main/logs/**/*.zst")}  # type: ignore[attr-defined]
        follower.send_signal(signal.SIGCONT)
        wait_for(caught_up, 60, "the follower to catch up")
        assert {p: p.stat().st_ino for p in objects} == objects  # not uploaded again
        # 2. it stalls with its copy; cron archives and purges; the copy is lost
        (copy,) = _children(follower.pid)
        follower.send_signal(signal.SIGSTOP)
        os.kill(copy, signal.SIGSTOP)
        for n in range(3):
            mark(site, f"purged-{n}")
            site.flush()
        assert site.archive()["archived"] == 3
        site.sql("PURGE BINARY LOGS TO %s", str(site.sql("SHOW BINARY LOGS")[-1][0]))
        os.kill(copy, signal.SIGKILL)
        follower.send_signal(signal.SIGCONT)
        wait_for(lambda: _children(follower.pid) not in ([], [copy]), 60, "a new binlog copy")
        mark(site, "after")
        site.flush()
        wait_for(caught_up, 60, "the follower to ship the next binlog")
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        follower = None
        result = json.loads(out)
        assert result["gaps"] == [] and "gap" not in err, err
        assert result["already_archived"] >= 2 and result["archived"] >= 1
        assert len(site.ok("list")["logs"]) == 1  # one stream
        assert site.archive()["gaps"] == [] and site.ok("verify")["failed"] == []
        with site.restore("--latest") as (_doc, restored):
            assert {"stalled-1", "purged-2", "after"} <= restored.markers()
    finally:
        if follower is not None:
            follower.send_signal(signal.SIGCONT)
            follower.kill()
            follower.wait()
        site.destroy()
