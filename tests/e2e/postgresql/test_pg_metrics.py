"""``pitr status --format prometheus`` and ``[status] textfile`` on a real PostgreSQL instance:
the metrics parse with the reference parser, pass ``promtool check metrics``, and say what the
repository and the last runs say (docs/monitoring.md)."""

from __future__ import annotations

import time
from datetime import datetime

from metrics_check import one, parse, promtool_lint
from pg_e2e import Site, seed


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_metrics_of_a_real_instance(site: Site) -> None:
    textfile = site.base / "textfile" / "pitr.prom"
    textfile.parent.mkdir()
    with site.config.open("a") as fh:
        fh.write(f'\n[status]\ntextfile = "{textfile}"\n\n[retention]\ndays = 7\n')
    seed(site, ("orders",))
    full = site.backup("full")
    assert textfile.is_file()  # written after the backup recorded its result
    site.sql("INSERT INTO keep SELECT g, 'x' FROM generate_series(100001, 100100) g")
    diff = site.backup("diff")
    site.archive_now()
    site.ok("verify")
    assert site.run("verify", "--backup", "no-such-backup").returncode != 0

    done = site.run("status", "--format", "prometheus")
    assert done.returncode == 0, str(done)
    promtool_lint(done.stdout)
    metrics = parse(done.stdout)
    assert parse(textfile.read_text()) == metrics or textfile.read_text() == done.stdout

    assert one(metrics, "pitr_instance_info", engine="postgresql") == 1
    assert one(metrics, "pitr_status") == 0
    assert one(metrics, "pitr_repository_up") == 1
    assert one(metrics, "pitr_backups", type="full") == 1
    assert one(metrics, "pitr_backups", type="diff") == 1
    assert one(metrics, "pitr_last_backup_info", backup_id=diff["id"], type="diff") == 1
    end = one(metrics, "pitr_last_backup_end_timestamp_seconds", type="full")
    assert end == _ts(full["end_time"])
    assert one(metrics, "pitr_last_backup_size_bytes", type="diff") == diff["bytes"]
    assert one(metrics, "pitr_last_backup_data_size_bytes", type="diff") == diff["raw_bytes"]
    assert 0 <= one(metrics, "pitr_archive_lag_seconds") < 120
    last_log = one(metrics, "pitr_last_archived_log_timestamp_seconds")
    assert abs(time.time() - last_log) < 120
    assert one(metrics, "pitr_archived_logs", stream="00000001") >= 2
    start = one(metrics, "pitr_recovery_window_start_timestamp_seconds")
    assert start == _ts(full["end_time"])
    listing = site.ok("list")
    end = one(metrics, "pitr_recovery_window_end_timestamp_seconds")
    assert end == _ts(listing["window"]["latest"])
    assert one(metrics, "pitr_recovery_window_seconds") > 0
    scoped = "pitr_scoped_recovery_window_start_timestamp_seconds"
    assert one(metrics, scoped, scope="timeline", scope_id="1") == start
    assert one(metrics, "pitr_retention_window_seconds") == 7 * 86400

    assert one(metrics, "pitr_last_run_success", command="backup") == 1
    assert one(metrics, "pitr_last_run_duration_seconds", command="backup") > 0
    assert one(metrics, "pitr_last_run_success", command="verify") == 0  # the refused one
    assert one(metrics, "pitr_last_run_exit_code", command="verify") > 0
    ok_at = one(metrics, "pitr_last_run_success_timestamp_seconds", command="verify")
    assert ok_at < one(metrics, "pitr_last_run_end_timestamp_seconds", command="verify")
    assert "pitr_follow_up" not in metrics  # no follower ran
    assert not [k for k in metrics["pitr_last_run_success"] if ("command", "archive") in k]


def test_unreadable_repository_is_reported_not_hidden(site: Site) -> None:
    """A repository that cannot be read: CRIT, ``pitr_repository_up 0``, the local metrics."""
    site.backup("full")
    url = f'url = "file://{site.repo_dir}"'
    closed = 'url = "s3://pitr/x"\nendpoint_url = "http://127.0.0.1:9"\ntimeout = 1.0'
    config = site.config.read_text().replace(url, closed)
    assert closed in config
    broken = site.base / "broken.toml"
    broken.write_text(config)
    site.env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="eu")
    done = site.run("status", "--format", "prometheus", config=str(broken))
    assert done.returncode == 2, str(done)
    metrics = parse(done.stdout)
    assert one(metrics, "pitr_repository_up") == 0
    assert one(metrics, "pitr_status") == 2
    assert one(metrics, "pitr_last_run_success", command="backup") == 1
    assert "pitr_backups" not in metrics
    promtool_lint(done.stdout)


def test_json_and_prometheus_exclude_each_other(site: Site) -> None:
    site.fails(2, "status", "--format", "prometheus", "--json")
