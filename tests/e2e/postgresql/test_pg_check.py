"""``pitr check`` on a PostgreSQL instance set up wrongly: ``wal_level`` too low,
``archive_mode`` off, an ``archive_command`` that is not pitr — each exit 6, the failing step
named in the report, its setting named in the error, and the steps after it not run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_e2e import Site, fresh_file_site

STEPS = [
    "reachable",
    "version",
    "wal_level",
    "archive_mode",
    "archive_command",
    "archive round trip",
    "full backup of this system",
]
#: What each case sets (ALTER SYSTEM, then a restart), the step that fails, the error and hint.
CASES = {
    "wal_level": (
        {"wal_level": "minimal", "archive_mode": "off", "max_wal_senders": "0"},
        "instance main: wal_level is 'minimal'",
        "HINT: set wal_level = replica",
    ),
    "archive_mode": (
        {"archive_mode": "off"},
        "instance main: archive_mode is 'off'",
        "HINT: set archive_mode = on",
    ),
    "archive_command": (
        {"archive_command": "cp %p /tmp/elsewhere/%f"},
        "instance main: archive_command is 'cp %p /tmp/elsewhere/%f', not pitr",
        "HINT: set archive_command = 'pitr wal-push %p'",
    ),
}


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with fresh_file_site() as site:
        yield site


def instance_steps(report: dict[str, object]) -> list[tuple[str, bool]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    prefix = "instance main: "
    return [(c["name"][len(prefix) :], c["ok"]) for c in checks if c["name"].startswith(prefix)]


def test_check_passes(site: Site) -> None:
    report = site.ok("check")
    assert report["ok"] is True
    assert instance_steps(report) == [(step, True) for step in STEPS]


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_refuses_a_wrong_setting(site: Site, case: str) -> None:
    settings, error, hint = CASES[case]
    for name, value in settings.items():
        site.sql(f"ALTER SYSTEM SET {name} = '{value}'")
    site.server.restart()
    try:
        done = site.fails(6, "check")
        assert done.error == f"error: {error}"
        assert hint in done.stderr
        report = site.run("check", "--json").json()
        assert report["ok"] is False
        assert report["error"]["exit_code"] == 6
        failed = STEPS.index(case)
        expected = [(step, True) for step in STEPS[:failed]] + [(case, False)]
        assert instance_steps(report) == expected  # nothing after the failing step
    finally:
        site.sql("ALTER SYSTEM RESET ALL")
        site.server.restart()
    assert site.ok("check")["ok"] is True
