"""Pure parts of the metrics: the exposition text (escaping, numbers, one HELP/TYPE per
family), the run records and follower heartbeats behind them, and where textfiles go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from metrics_check import one, parse

from pitr.commands.metrics import InstanceMetrics, _follower, _runs, render, textfile_targets
from pitr.config.settings import InstanceSettings, RepositorySettings, Settings, StatusSettings
from pitr.storage.runstate import read_run, record_run, write_follow

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def test_render_escapes_labels_and_groups_families() -> None:
    a, b = InstanceMetrics("a"), InstanceMetrics('we"ird\\na\nme')
    for report in (a, b):
        report.add("pitr_status", 1)
        report.add("pitr_archive_lag_seconds", 2.5)
    a.add("pitr_last_backup_info", 1, backup_id="20260304T020000Z-F", type="full")
    a.add("pitr_recovery_window_seconds", None)  # nothing to say: no sample
    text = render([a, b])
    assert text.count("# TYPE pitr_status gauge") == 1
    assert "pitr_recovery_window_seconds" not in text
    assert 'pitr_status{pitr_instance="a"} 1\n' in text
    metrics = parse(text)
    assert one(metrics, "pitr_status", pitr_instance='we"ird\\na\nme') == 1
    assert one(metrics, "pitr_archive_lag_seconds", pitr_instance="a") == 2.5


def test_run_records_keep_the_last_success(tmp_path: Path) -> None:
    lock_dir = str(tmp_path / "locks")
    record_run(lock_dir, "main", "backup", NOW, NOW + timedelta(seconds=90), 0, None)
    later = NOW + timedelta(days=1)
    record_run(lock_dir, "main", "backup", later, later + timedelta(seconds=5), 5, "unreachable")
    record = read_run(lock_dir, "main", "backup")
    assert record is not None and not record.succeeded
    assert record.last_success == NOW + timedelta(seconds=90)
    assert record.message == "unreachable"
    found = InstanceMetrics("main")
    _runs(found, lock_dir)
    metrics = parse(render([found]))
    assert one(metrics, "pitr_last_run_success", command="backup") == 0
    assert one(metrics, "pitr_last_run_exit_code", command="backup") == 5
    assert one(metrics, "pitr_last_run_duration_seconds", command="backup") == 5
    ok_at = one(metrics, "pitr_last_run_success_timestamp_seconds", command="backup")
    assert ok_at == (NOW + timedelta(seconds=90)).timestamp()
    assert "verify" not in render([found])  # never ran: not reported


def test_an_unreadable_record_is_no_record(tmp_path: Path) -> None:
    (tmp_path / "main.last-verify.json").write_text("{not json")
    assert read_run(str(tmp_path), "main", "verify") is None


def _follow(tmp_path: Path, **state: object) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    write_follow(str(tmp_path), "main", state)
    found = InstanceMetrics("main")
    _follower(found, str(tmp_path), NOW)
    return parse(render([found]))


def test_follower_up_lagging_stale_and_stopped(tmp_path: Path) -> None:
    beat = NOW - timedelta(seconds=10)
    level = beat - timedelta(seconds=42)
    metrics = _follow(tmp_path, started=NOW - timedelta(hours=1), heartbeat=beat,
                      caught_up=level, behind_bytes=1234, stopped=None)  # fmt: skip
    assert one(metrics, "pitr_follow_up") == 1
    assert one(metrics, "pitr_follow_lag_seconds") == 42
    assert one(metrics, "pitr_follow_behind_bytes") == 1234
    stale = NOW - timedelta(minutes=5)
    metrics = _follow(tmp_path, started=stale, heartbeat=stale, caught_up=stale, behind_bytes=0)
    assert one(metrics, "pitr_follow_up") == 0
    assert one(metrics, "pitr_follow_lag_seconds") == 0
    metrics = _follow(tmp_path, started=beat, heartbeat=beat, caught_up=None, stopped=beat,
                      behind_bytes=None)  # fmt: skip
    assert one(metrics, "pitr_follow_up") == 0
    assert "pitr_follow_behind_bytes" not in metrics


def test_textfile_targets() -> None:
    instances = {n: InstanceSettings(n, "postgresql") for n in ("b", "a")}

    def settings(path: str | None) -> Settings:
        return Settings("t", RepositorySettings(), instances, status=StatusSettings(textfile=path))

    assert textfile_targets(settings(None), ["a"]) == []
    assert textfile_targets(settings("/x/pitr.prom"), ["a"]) == [(Path("/x/pitr.prom"), ["a", "b"])]
    assert textfile_targets(settings("/x/pitr-{instance}.prom"), ["a"]) == [
        (Path("/x/pitr-a.prom"), ["a"])
    ]
