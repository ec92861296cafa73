"""contrib/systemd: every unit passes ``systemd-analyze verify`` (no warning at all) as an
instance, every service is hardened (``systemd-analyze security`` exposure at most 4.0) and runs
as the database's OS user, and every timer starts a service that exists. The units are checked
with ``ExecStart`` pointing at the pitr under test (verify requires the program to exist)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import PITR

UNITS = Path(__file__).parents[1] / "contrib" / "systemd"
NAMES = sorted(p.name for p in UNITS.iterdir())
SERVICES = [n for n in NAMES if n.endswith(".service")]


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing (Debian's systemd package)"
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture
def units(tmp_path: Path) -> Path:
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/usr/local/bin/pitr", str(PITR))
        (tmp_path / name).write_text(text)
    return tmp_path


def _instance(name: str) -> str:
    return name.replace("@.", "@main.")


def _sections(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def test_the_units_are_there() -> None:
    stems = {n.split("@")[0] for n in NAMES}
    assert stems == {
        "pitr-backup", "pitr-archive", "pitr-verify", "pitr-follow", "pitr-wal-follow",
        "pitr-status",
    }  # fmt: skip
    for timer in (n for n in NAMES if n.endswith(".timer")):
        assert timer.replace(".timer", ".service") in NAMES


def test_systemd_analyze_verify(units: Path) -> None:
    done = _analyze("verify", "--man=no", *map(_instance, NAMES), cwd=units)
    assert done.returncode == 0 and not done.stdout and not done.stderr, done.stderr


def test_verify_reports_a_mistake(units: Path) -> None:
    """The check above can fail: an unknown key is reported (as a warning only)."""
    path = units / "pitr-backup@.service"
    path.write_text(path.read_text().replace("[Service]\n", "[Service]\nProtectSytem=strict\n"))
    done = _analyze("verify", "--man=no", "pitr-backup@main.service", cwd=units)
    assert "Unknown key 'ProtectSytem'" in done.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_services_are_hardened(units: Path, name: str) -> None:
    service = _sections(name)["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert service["User"] == ("mysql" if name.startswith("pitr-follow") else "postgres")
    assert service["ExecStart"].startswith("/usr/local/bin/pitr --instance %i ")
    done = _analyze(
        "security", "--offline=true", "--threshold=40", "--no-pager", _instance(name), cwd=units
    )
    assert done.returncode == 0, done.stdout + done.stderr
