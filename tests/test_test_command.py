"""The README's test command as a new user runs it. On a fresh Debian 12 machine (a debootstrap
root, tests/fresh_debian.py), as root from a checkout in /root: ``scripts/test`` runs
scripts/bootstrap in full (every Debian package of the suite, PostgreSQL 16-18 from their
wheels, the virtualenv with the pinned test toolchain), then ruff, mypy and pytest; it passes,
and leaves no unit enabled, no SysV start link, no policy-rc.d and no process behind that the
machine did not have.

Only a selection of the suite runs inside the root, given as the command's own pytest
arguments: one real PostgreSQL story (the README's: the DROP found with ``events``, restored to
just before it; its server runs as ``postgres`` on its own port), the alert rules checked by
Debian's ``promtool``, and the layering guard. The whole suite inside the root would double
CI's time and need roots inside the root, and even the unit tests would add 1.5-2 minutes
here: the rest is what CI runs outside it, after the same bootstrap.
"""

from __future__ import annotations

import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fresh_debian import enabled_units, machine, processes_in, run_in

CHECKOUT = Path(__file__).parents[1]
SKIP = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", ".*_cache")
STORY = (
    "tests/e2e/postgresql/test_pg_targets",
    "test_exclusive_on_the_drop_found_with_events[pg15-full]",
)
OTHERS = ("tests/test_monitoring_docs.py", "tests/unit/test_architecture.py")
SELECTION = [f"{STORY[0]}.py::{STORY[1]}", *OTHERS, "-q", "--junitxml=/root/test-command.xml"]
#: what scripts/bootstrap installs for the suite (the quick start installs none of the first five)
INSTALLED = ("mariadb-server", "swift", "memcached", "pgbackrest", "prometheus", "debootstrap",
             "postgresql-15", "age", "zstd")  # fmt: skip


def _check_passed(root: Path, stdout: str) -> None:
    """ruff, mypy and every selected test ran and passed, nothing skipped."""
    assert "All checks passed!" in stdout and " already formatted" in stdout, stdout[-3000:]
    assert re.search(r"^Success: no issues found in \d+ source files$", stdout, re.M), stdout
    suite = ET.parse(root / "root/test-command.xml").getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert not counts["failures"] + counts["errors"] + counts["skipped"], counts
    ran = {f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")}
    assert f"{STORY[0].replace('/', '.')}::{STORY[1]}" in ran
    modules = {name.split("::")[0] for name in ran}
    assert {m.removesuffix(".py").replace("/", ".") for m in OTHERS} < modules, modules
    assert re.search(r"^\d+ passed in ", stdout, re.M), stdout[-3000:]


def _check_installed_in_full(root: Path, stderr: str) -> None:
    """The bootstrap ran in full, and disabled what its packages enabled."""
    status = (root / "var/lib/dpkg/status").read_text()
    assert all(f"Package: {name}\n" in status for name in INSTALLED), stderr
    for major in (16, 17, 18):
        assert list((root / f"var/cache/pitr-test/pg/{major}").glob("*/pginstall/bin/postgres"))
    assert (root / "opt/pitr/venv/bin/pytest").exists()
    disabled = re.search(r"bootstrap: disabling the units the packages enabled: (.*)", stderr)
    assert disabled and "postgresql.service" in disabled[1], stderr  # else no check means much


@pytest.mark.timeout(1800)
def test_test_command_passes_and_leaves_no_trace_on_a_fresh_debian_12() -> None:
    with machine() as root:
        before = enabled_units(root)
        assert not (root / "usr/sbin/policy-rc.d").exists()
        shutil.copytree(CHECKOUT, root / "root/pitr", ignore=SKIP)
        (root / "root").chmod(0o700)

        command = f"cd /root/pitr && scripts/test {shlex.join(SELECTION)}"
        done = run_in(root, ["/bin/bash", "-c", command], {}, 1700)
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        _check_passed(root, done.stdout)
        _check_installed_in_full(root, done.stderr)
        assert enabled_units(root) == before
        assert not (root / "usr/sbin/policy-rc.d").exists()
        assert processes_in(root) == []
