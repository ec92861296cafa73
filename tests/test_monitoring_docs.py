"""docs/monitoring.md: it lists exactly the metrics pitr exports, and its alert rules are valid
(``promtool check rules``) and fire when they should and only then (``promtool test rules``
on synthetic series)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pitr.commands.metrics import HELP

DOC = Path(__file__).parents[1] / "docs" / "monitoring.md"
HOUR = 3600


def _rules_text() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_every_metric_is_documented() -> None:
    listed = set(re.findall(r"^\| `(pitr_[a-z_]+)` \|", DOC.read_text(), re.M))
    assert listed == set(HELP)


def test_rules_use_only_exported_metrics() -> None:
    rules = yaml.safe_load(_rules_text())["groups"][0]["rules"]
    used = {m for r in rules for m in re.findall(r"\bpitr_[a-z_]+\b", r["expr"])}
    assert used <= set(HELP), used - set(HELP)


def _promtool(*args: str, cwd: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (Debian's prometheus package; scripts/bootstrap)"
    done = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    pairs = ",".join(f'{k}="{v}"' for k, v in {"pitr_instance": "db", **labels}.items())
    return {"series": f"{name}{{{pairs}}}", "values": values}


def _alert(rules: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any]:
    rule = next(r for r in rules if r["alert"] == name)
    all_labels = {"pitr_instance": "db", **labels, **rule["labels"]}
    notes = {}
    for key, template in rule["annotations"].items():
        text = str(template)
        for label, value in all_labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        notes[key] = text
    return {"exp_labels": all_labels, "exp_annotations": notes}


def test_alert_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(_rules_text())
    _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    rules = yaml.safe_load(_rules_text())["groups"][0]["rules"]
    # One sample a minute; at minute N, time() is N * 60. The backup ended at 0 and the newest
    # log was archived at 0 (then never again); the window is 2 days for a 7-day retention.
    minutes = 27 * 60
    flat = f"0x{minutes}"
    series = [
        _series("pitr_last_backup_end_timestamp_seconds", flat, type="full"),
        _series("pitr_backups", f"1x{minutes}", type="full"),
        _series("pitr_last_archived_log_timestamp_seconds", flat),
        _series("pitr_recovery_window_seconds", f"{2 * 24 * HOUR}x{minutes}"),
        _series("pitr_retention_window_seconds", f"{7 * 24 * HOUR}x{minutes}"),
        _series("pitr_last_run_success", f"1x{minutes}", command="backup"),
        _series("pitr_repository_up", f"1x{minutes}"),
    ]

    def at(minute: int, name: str, *alerts: dict[str, Any]) -> dict[str, Any]:
        return {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": list(alerts)}

    cases = [
        at(25 * 60, "PitrNoRecentBackup"),
        at(26 * 60 + 1, "PitrNoRecentBackup", _alert(rules, "PitrNoRecentBackup")),
        at(5, "PitrArchiveLag"),  # 5 minutes: not over
        at(9, "PitrArchiveLag"),  # over 5 minutes, but not yet for 5 minutes
        at(11, "PitrArchiveLag", _alert(rules, "PitrArchiveLag")),
        at(30, "PitrWindowShorterThanRetention"),
        at(61, "PitrWindowShorterThanRetention", _alert(rules, "PitrWindowShorterThanRetention")),
        at(120, "PitrNoBackup"),
        at(120, "PitrRunFailed"),
        at(120, "PitrRepositoryUnreadable"),
    ]
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    _promtool("test", "rules", "test.yml", cwd=tmp_path)


@pytest.mark.parametrize("broken", ["expr: time( -", "for: soon"])
def test_promtool_catches_broken_rules(tmp_path: Path, broken: str) -> None:
    """The check above can fail: promtool rejects a rule file with a mistake in it."""
    text = _rules_text().replace("expr: pitr_repository_up == 0", broken, 1)
    (tmp_path / "rules.yml").write_text(text)
    with pytest.raises(AssertionError):
        _promtool("check", "rules", "rules.yml", cwd=tmp_path)
