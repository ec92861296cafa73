"""docs/json.md lists exactly the keys of the documents ``pitr.cli.documents`` builds for
``check``, ``verify``, ``expire``, ``status``, ``backup``, ``wal-push``, ``wal-fetch``,
``recover``/``restore``, ``archive``, ``catalog rebuild`` and the error document (``plan``
and ``list``: test_json_docs.py). Each document is built from results made in memory that
reach every optional key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from catalogs import backup, minute, wal
from test_json_docs import binlogs, documented, key_paths, pg, plans

from pitr.cli import documents
from pitr.commands.expire import Expired
from pitr.commands.status import Check, Health
from pitr.commands.verify import Failure, Verified
from pitr.domain.checks import CheckReport
from pitr.engines.base import Archived
from pitr.engines.recovery import Recovered
from pitr.errors import LockHeld, error_dict
from pitr.planner import window
from pitr.planner.retention import Expiry


def wal_documented(command: str) -> set[str]:
    """The ``wal-push`` / ``wal-fetch`` table names the command in its first column."""
    text = documented.__globals__["DOC"].read_text()
    start = text.index("\n## `pitr wal-push --json`")
    section = text[start : text.find("\n## ", start + 1)]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    return {row[2].strip().strip("`") for row in rows if row[1].strip() == f"`{command}`"}


def failing_report() -> CheckReport:
    report = CheckReport()
    report.add("config", True, "pitr.toml is valid")
    report.step("repository open", lambda: "file:///repo")

    def refused() -> str:
        raise LockHeld("held", hint="wait")

    report.step("instance main: reachable", refused)
    return report


def recoveries() -> list[Recovered]:
    pg_plan, mariadb_plan = plans()[0], plans()[3]
    reached = {"lsn": "0/5000060", "xid": 305, "gtid": None, "timeline": 2}
    return [
        Recovered("main", pg_plan, Path("/pg"), {**reached, "last_commit": "t"}, minute(5), 5432),
        Recovered(
            "main",
            mariadb_plan,
            Path("/my"),
            {"lsn": None, "xid": None, "gtid": "0-1-5"},
            minute(5),
            3306,
            previous_datadir=Path("/my.pitr-x"),
            previous_binlogs=Path("/binlogs.pitr-x"),
        ),
    ]


def made() -> dict[str, list[dict[str, Any]]]:
    kept, gone = backup("F2", 5), backup("F1", 1)
    expiry = Expiry((kept,), (gone,), (wal(0),), {"F3": ["backups/F3/base.tar"]})
    checks = [Check("backup", "OK", "last backup F2, 5 s ago", 5.0), Check("archive", "CRIT", "")]
    return {
        "check": [documents.check(failing_report())],
        "verify": [documents.verify(Verified(2, 64, [Failure("k", "checksum")], True))],
        "expire": [documents.expire(Expired(True, expiry))],
        "status": [documents.status(Health("CRIT", checks, window(pg())))],
        "backup": [documents.backup(backup("D1", 3, kind="diff", parent="F1"))],
        "recover": [documents.recovery(r) for r in recoveries()],
        "catalog rebuild": [{"backups": 2, "logs": 11, "streams": 2}],
        "archive": [
            documents.archive(Archived(0, 1)),
            documents.archive(Archived(1, 0, ["mysql-bin.000002"], ["gap"], "signal", "/spool")),
        ],
    }


@pytest.mark.parametrize("command", sorted(made()))
def test_command_keys_are_documented_and_real(command: str) -> None:
    real = set().union(*(key_paths(doc) for doc in made()[command]))
    doc = documented(command)
    assert doc - real == set(), "documented in docs/json.md but not printed"
    assert real - doc == set(), "printed but not documented in docs/json.md"


def test_wal_keys_are_documented_and_real() -> None:
    assert key_paths(documents.wal_push("000000010000000000000006", True)) == wal_documented(
        "wal-push"
    )
    assert key_paths(documents.wal_fetch("000000010000000000000009", False)) == wal_documented(
        "wal-fetch"
    )


def test_error_keys_are_documented_and_real() -> None:
    text = documented.__globals__["DOC"].read_text()
    section = text[text.index("\n## Errors") : text.index("\n## `pitr list --json`")]
    doc = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert key_paths({"error": error_dict(LockHeld("held"))}) - {"error"} == doc


def test_binlog_recovery_keeps_its_own_keys() -> None:
    """The one Recovered gives each engine the keys docs/json.md promises it, in its order."""
    pg_doc, my_doc = (documents.recovery(r)["recovery"] for r in recoveries())
    assert list(pg_doc)[-1] == "timeline" and "previous_binlogs" not in pg_doc
    assert "timeline" not in my_doc and my_doc["previous_binlogs"] == "/binlogs.pitr-x"
    assert binlogs("mariadb").engine == my_doc["datastore"] == "mariadb"
