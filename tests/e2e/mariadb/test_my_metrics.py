"""``pitr status --format prometheus`` on a real MariaDB instance: backups, archived binlogs,
the window per GTID domain, the last runs, and a follower's heartbeat and lag while
``archive --follow`` runs (up, level with the server) and after it stopped (down)."""

from __future__ import annotations

import signal
import subprocess

from clirun import PITR, wait_for
from metrics_check import Labels, one, parse, promtool_lint
from my_e2e import Site, file_site, mark, public_dir, seed


def _metrics(site: Site) -> dict[str, dict[Labels, float]]:
    done = site.run("status", "--format", "prometheus")
    assert done.returncode in (0, 1), str(done)
    promtool_lint(done.stdout)
    return parse(done.stdout)


def test_metrics_with_a_follower() -> None:
    site = file_site(public_dir())
    follower = None
    try:
        seed(site, ("orders",))
        full = site.backup("full")
        site.sql("SET STATEMENT gtid_domain_id = 7 FOR INSERT INTO shop.markers (name) VALUES (%s)",
                 "domain 7")  # fmt: skip
        site.flush()
        site.archive()
        follower = subprocess.Popen(
            [str(PITR), "--config", str(site.config), "archive", "--follow", "--json"],
            cwd=site.base, env=site.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        mark(site, "followed")

        def level() -> bool:
            found = _metrics(site)
            return (
                found.get("pitr_follow_up") is not None
                and one(found, "pitr_follow_up") == 1
                and one(found, "pitr_follow_behind_bytes") == 0
            )

        wait_for(level, 60, "the follower to report itself level with the server")
        metrics = _metrics(site)
        assert one(metrics, "pitr_follow_lag_seconds") == 0
        assert one(metrics, "pitr_instance_info", engine="mariadb") == 1
        assert one(metrics, "pitr_last_backup_info", backup_id=full["id"], type="full") == 1
        assert one(metrics, "pitr_last_run_success", command="archive") == 1
        assert sum(metrics["pitr_archived_logs"].values()) >= 2
        scoped = "pitr_scoped_recovery_window_end_timestamp_seconds"
        domains = {dict(k)["scope_id"] for k in metrics[scoped]}
        assert {"0", "7"} <= domains, metrics[scoped]
        assert {dict(k)["scope"] for k in metrics[scoped]} == {"domain"}

        follower.send_signal(signal.SIGTERM)
        _out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        follower = None
        metrics = _metrics(site)
        assert one(metrics, "pitr_follow_up") == 0  # stopped: down at once, not after a while
        assert one(metrics, "pitr_last_run_success", command="archive") == 1
    finally:
        if follower is not None:
            follower.kill()
            follower.wait()
        site.destroy()
