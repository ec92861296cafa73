"""The README's quick start as a new user runs it. On a fresh Debian 12 machine (a debootstrap
root, tests/fresh_debian.py), as root from a checkout in /root (which the postgres user cannot
read): the story passes, prints no error-looking line, shows each SQL statement and each pitr
command exactly (``--config`` included), installs no test toolchain, and leaves no unit enabled,
no policy-rc.d and no process behind that the machine did not have. ``--mariadb`` tells the
same story on this machine's MariaDB."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fresh_debian import enabled_units, machine, processes_in, run_in

CHECKOUT = Path(__file__).parents[1]
SKIP = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", ".*_cache", "tests")
#: what would make a DBA think something went wrong
ALARMING = re.compile(r"error|fatal|could not|cannot|denied|traceback|warning|fail", re.I)


def _check_story(returncode: int, stdout: str, stderr: str, venv: str, mariadb: bool) -> None:
    output = stdout + stderr
    assert returncode == 0, output[-6000:]
    assert "The table is back with the same contents." in stdout, output[-6000:]
    alarming = [line for line in output.splitlines() if ALARMING.search(line)]
    assert not alarming, alarming
    pitr = re.escape(f"{venv}/bin/pitr")
    shown = re.compile(rf"^\$ {pitr} --config /tmp/pitr-quickstart-\w+/pitr.toml (\w+)")
    commands = [m[1] for m in map(shown.match, stdout.splitlines()) if m]
    story = ["check", "backup", "archive", "events", "plan", "restore"]
    assert commands == [c for c in story if mariadb or c != "archive"], stdout
    engine, table = ("mariadb", "shop.orders") if mariadb else ("postgresql", "orders")
    assert f"{engine}@127.0.0.1:" in stdout and f"> DROP TABLE {table};" in stdout, stdout


def test_quick_start_leaves_no_trace_on_a_fresh_debian_12() -> None:
    with machine() as root:
        before = enabled_units(root)
        assert not (root / "usr/sbin/policy-rc.d").exists()
        shutil.copytree(CHECKOUT, root / "root/pitr", ignore=SKIP)
        (root / "root").chmod(0o700)

        done = run_in(root, ["/bin/bash", "-c", "cd /root/pitr && scripts/quickstart"], {}, 900)
        _check_story(done.returncode, done.stdout, done.stderr, "/opt/pitr/venv", mariadb=False)
        assert enabled_units(root) == before
        assert not (root / "usr/sbin/policy-rc.d").exists()
        assert processes_in(root) == []
        assert not (root / "root/.local/state/pitr").exists()  # pitr's state stayed in the sandbox
        installed = (root / "var/lib/dpkg/status").read_text()
        for toolchain in ("mariadb-server", "swift", "memcached", "pgbackrest", "prometheus"):
            assert f"Package: {toolchain}\n" not in installed
        assert not (root / "opt/pitr/venv/bin/pytest").exists()


def test_quick_start_tells_the_same_story_on_mariadb() -> None:
    venv = str(Path(sys.executable).parent.parent)
    done = subprocess.run(
        [str(CHECKOUT / "scripts/quickstart"), "--mariadb"],
        env={**os.environ, "PITR_VENV": venv}, capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    _check_story(done.returncode, done.stdout, done.stderr, venv, mariadb=True)
