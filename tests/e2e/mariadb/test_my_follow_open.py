"""``archive --follow`` ships the open binlog's complete transactions every
``follow_interval`` seconds (5 by default): a row committed seconds before the database host
dies is recoverable from the repository alone, though the server never closed its binlog; once
the file closes, the closed file replaces that copy."""

from __future__ import annotations

import json
import signal

from my_e2e import Site, file_site, mark, public_dir, seed, wait_for


def recoverable(site: Site, gtid: str) -> bool:
    return site.run("plan", "--gtid", gtid).returncode == 0


def open_objects(site: Site) -> list[str]:
    return sorted(p.name for p in site.repo_dir.glob("main/open/*/*"))  # type: ignore[attr-defined]


def test_a_row_committed_just_before_the_host_dies_is_recoverable() -> None:
    site = file_site(public_dir())
    follower = None
    try:
        seed(site, ())
        site.backup("full")
        follower = site.follow()
        mark(site, "early")
        wait_for(lambda: recoverable(site, site.gtid()), 30, "the open binlog's first shipment")
        mark(site, "last")
        last = site.gtid()
        wait_for(lambda: recoverable(site, last), 30, "the row shipped within follow_interval")
        site.server.kill()  # the host dies: the binlog was never closed
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        follower = None
        assert json.loads(out).get("files") == [], out + err
        open_name = str(site.server.binlog_files()[-1].name)
        plan = site.ok("plan", "--gtid", last)["plan"]
        assert plan["recoverable"] and plan["steps"][-1]["logs"][-1] == open_name
        with site.restore("--gtid", last) as (doc, restored):
            assert doc["reached"]["gtid"] == last
            assert {"early", "last"} <= restored.markers()
        assert open_objects(site)  # the open copy and its index document
        # the server comes back and rotates: the closed file replaces the open copy
        site.server.start()
        follower = site.follow()
        mark(site, "back")
        back = site.gtid()
        site.flush()
        wait_for(lambda: recoverable(site, back) and not open_objects(site), 60,
                 "the closed files archived, the open copy removed")  # fmt: skip
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        follower = None
        assert open_name in json.loads(out).get("files", []), out + err
        with site.restore("--latest") as (_doc, restored):
            assert {"early", "last", "back"} <= restored.markers()
    finally:
        if follower is not None:
            follower.kill()
            follower.wait()
        site.destroy()
