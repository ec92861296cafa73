"""docs/cli.md is generated from the commands' --help and must be current."""

from __future__ import annotations

from pathlib import Path

from pitr.cli.docs import render

DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m pitr.cli.docs > docs/cli.md"


def test_every_spec_command_is_documented() -> None:
    text = DOC.read_text()
    for command in [
        "backup", "check", "archive", "wal-push", "wal-fetch", "list", "plan", "recover",
        "restore", "verify", "expire", "status", "events", "catalog rebuild", "inspect",
    ]:  # fmt: skip
        assert f"## pitr {command}\n" in text, command
