"""docs/json.md lists exactly the keys of the documents ``pitr.cli.documents`` builds for
``check``, ``verify``, ``expire``, ``status``, ``backup``, ``wal-push``, ``wal-fetch``,
``recover``/``restore``, ``archive``, ``catalog rebuild``, ``events``, ``inspect`` and the
error document (``plan`` and ``list``: test_json_docs.py). Each document is built from results
made in memory that reach every optional key (``inspect``'s binlog: a real one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from catalogs import backup, minute, wal
from test_json_docs import DOC, binlogs, documented, key_paths, pg, plans

from pitr.cli import documents
from pitr.commands.events import searched
from pitr.commands.expire import Expired
from pitr.commands.inspect import HistoryFile, Inspected, WalFile, inspect_file
from pitr.commands.status import Check, Health
from pitr.commands.verify import Failure, Verified
from pitr.domain.checks import CheckReport
from pitr.engines.base import Archived, Event
from pitr.engines.postgresql.walfile import HistoryEntry, PageHeader
from pitr.engines.postgresql.walreader import RestorePoint, SegmentSummary, XactEnd
from pitr.engines.recovery import Recovered
from pitr.errors import LockHeld, error_dict
from pitr.planner import window
from pitr.planner.retention import Expiry

BINLOG = Path(__file__).parents[1] / "vectors" / "generated" / "mysql-bin.000006"


def wal_documented(command: str) -> set[str]:
    """The ``wal-push`` / ``wal-fetch`` table names the command in its first column."""
    text = DOC.read_text()
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


def found_events() -> list[Event]:
    """A PostgreSQL commit and a MariaDB transaction, as the engines find them."""
    drop = "DROP TABLE `shop`.`orders`"
    return [
        Event(minute(3), "0/3001388", "000000010000000000000003", "COMMIT", xid=304, timeline=1),
        Event(
            minute(4),
            "mysql-bin.000003:1234",
            "mysql-bin.000003",
            drop,
            gtid="0-1-42",
            end="mysql-bin.000003:1400",
            stream="1-mysql-bin.000001-3fa2b1c9",
        ),
    ]


def inspected() -> list[Inspected]:
    """A file of each kind, each reaching every key its kind has (the binlog has row events)."""
    header = PageHeader(15, 1, 0x4000000, 7, 16 << 20, 8192)
    xact = XactEnd("commit", 731, minute(3), True, 0x4000100, 0x4000140)
    point = RestorePoint("before-drop", minute(2), 0x4000080, 0x40000C0)
    summary = SegmentSummary(header, 16 << 20, 0x4001000, "XLOG SWITCH", True, 9, (xact,), (point,))
    entry = HistoryEntry(1, 0x4000000, "0/4000000", "no recovery target specified")
    return [
        inspect_file(str(BINLOG)),
        WalFile("000000010000000000000004", summary, 1, True),
        HistoryFile("00000002.history", 2, (entry,)),
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
        "events": [documents.events(found_events())],
        "inspect": [documents.inspect(inspected())],
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


def kind_documented(kind: str) -> set[str]:
    """``inspect``'s keys for one ``kind``: the first table's, then that kind's table's."""
    text = DOC.read_text()
    start = text.index("\n## `pitr inspect --json`")
    parts = re.split(
        r"^\*\*`([a-z-]+)`\*\*", text[start : text.find("\n## ", start + 1)], flags=re.M
    )
    tables = dict(zip(parts[1::2], parts[2::2], strict=True))
    return {*re.findall(r"^\| `([^`]+)` \|", parts[0] + tables[kind], re.MULTILINE)}


def test_each_inspect_kind_has_its_documented_keys() -> None:
    entries = documents.inspect(inspected())["files"]
    assert [e["kind"] for e in entries] == ["binlog", "wal", "timeline-history"]
    for entry in entries:
        assert key_paths({"files": [entry]}) == kind_documented(entry["kind"]), entry["kind"]


def test_grep_searches_what_the_json_entry_holds() -> None:
    """``events --grep`` looks in an event's values in the order of its document."""
    for event in found_events():
        assert searched(event) == " ".join(str(v) for v in documents.event(event).values())
