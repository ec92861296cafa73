"""What the metrics tests share: ``pitr status --format prometheus`` output read back with the
reference parser (``prometheus_client``) and linted with ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> dict[str, dict[Labels, float]]:
    """Every sample by metric name and label set (sorted pairs, ``pitr_instance`` included).
    Each family must be a gauge with help text."""
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            assert key not in found.setdefault(sample.name, {}), (sample.name, key)
            found[sample.name][key] = sample.value
    return found


def one(metrics: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    matching = [
        value for key, value in metrics.get(name, {}).items() if set(labels.items()) <= set(key)
    ]
    assert len(matching) == 1, (name, labels, metrics.get(name))
    return matching[0]


def promtool_lint(text: str) -> None:
    """``promtool check metrics``: the exposition format and the naming conventions."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (Debian's prometheus package; scripts/bootstrap)"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
