"""docs/json.md lists exactly the keys ``plan --json`` and ``list --json`` print: every key it
documents appears in a real document, and every key a document has is documented.

The documents come from catalogs built in memory for each engine (PostgreSQL with a second
timeline; MariaDB and MySQL binlogs), with plans that reach every optional key: a
``--timeline``, a last transaction, problems, MariaDB's whole-second notes, a differential.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from catalogs import SEG, backup, history, minute, pg_catalog, transactions, wal
from test_planner_binlog_gtids import at, binlog, catalog
from test_planner_binlog_gtids import backup as binlog_backup
from test_planner_binlog_gtids import plan as binlog_plan

from pitr.catalog import Catalog
from pitr.cli.documents import listing as describe
from pitr.domain.targets import Target, parse_target
from pitr.planner import build_plan, documents_needed
from pitr.planner.plan import Plan

DOC = Path(__file__).parents[2] / "docs" / "json.md"


def documented(command: str) -> set[str]:
    """The key paths in the first column of the tables of ``command``'s section."""
    text = DOC.read_text()
    start = text.index(f"\n## `pitr {command} --json`")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def key_paths(doc: Any, prefix: str = "") -> set[str]:
    """``plan.steps[].action`` style paths of every key in ``doc``."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else key
            found |= {path, *key_paths(value, path)}
    elif isinstance(doc, list):
        for item in doc:
            found |= key_paths(item, f"{prefix}[]")
    return found


def pg() -> Catalog:
    """A full and a differential on timeline 1; timeline 2 branched off in segment 5."""
    tli2 = [
        wal(n, tli=2, first=minute(20 + n), last=minute(20 + n) + timedelta(seconds=30))
        for n in range(5, 9)
    ]
    return pg_catalog(
        [backup("F1", 1), backup("D1", 3, kind="diff", parent="F1")],
        [*(wal(n) for n in range(10)), *tli2],
        [history(2, [(1, 5 * SEG + 0x4000)], minute(20))],
    )


def pg_plan(cat: Catalog, target: Target) -> Plan:
    located = {s.ref: transactions(s) for s in documents_needed(cat, target)}
    return build_plan(cat, target, located=located)


def binlogs(flavour: str) -> Catalog:
    return catalog(
        flavour, [binlog_backup(flavour, "F1", 1, 1)], [binlog(flavour, n) for n in range(1, 6)]
    )


def plans() -> list[Plan]:
    cat = pg()
    after_the_diff = (minute(5) + timedelta(seconds=20)).isoformat()
    found = [
        pg_plan(cat, parse_target("postgresql", xid="305", exclusive=True, timeline="1")),
        pg_plan(cat, parse_target("postgresql", at=after_the_diff)),
        pg_plan(cat, parse_target("postgresql", at=minute(0).isoformat())),  # before any backup
    ]
    for flavour in ("mariadb", "mysql"):
        moment = at(3, 10.5)  # inside a second with a transaction: MariaDB notes it
        found.append(binlog_plan(binlogs(flavour), parse_target(flavour, at=moment.isoformat())))
    return found


def test_plan_keys_are_documented_and_real() -> None:
    produced = plans()
    assert [p.recoverable for p in produced] == [True, True, False, True, True]
    assert produced[3].notes, "the MariaDB plan should carry a note"
    real = set().union(*(key_paths(p.to_dict()) for p in produced))
    doc = documented("plan")
    assert doc - real == set(), "documented in docs/json.md but not printed"
    assert real - doc == set(), "printed but not documented in docs/json.md"


def test_list_keys_are_documented_and_real() -> None:
    listed = [describe(c) for c in (pg(), binlogs("mariadb"), binlogs("mysql"))]
    real = set().union(*(key_paths(listing) for listing in listed))
    doc = documented("list")
    assert doc - real == set(), "documented in docs/json.md but not printed"
    assert real - doc == set(), "printed but not documented in docs/json.md"
