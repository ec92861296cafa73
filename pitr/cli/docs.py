"""docs/cli.md from the commands' own --help, so the reference cannot drift from the code
(a test regenerates it and compares)."""

from __future__ import annotations

from typing import Any

import click

WIDTH: dict[str, Any] = {
    "terminal_width": 100,
    "max_content_width": 100,
    "help_option_names": ["-h", "--help"],
}


def _help(command: click.Command, path: list[str], parent: click.Context | None) -> str:
    ctx = click.Context(command, info_name=path[-1], parent=parent, **WIDTH)
    return command.get_help(ctx)


def render() -> str:
    from pitr.cli.main import cli

    root = click.Context(cli, info_name="pitr", **WIDTH)
    parts = [
        "# Command reference",
        "",
        "Generated from `pitr --help` by `python -m pitr.cli.docs > docs/cli.md`; a test checks",
        "that it is current. Exit codes: docs/exit-codes.md.",
        "",
        "```",
        cli.get_help(root),
        "```",
    ]

    def walk(group: click.Group, ctx: click.Context, path: list[str]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            full = [*path, name]
            parts.extend(["", f"## {' '.join(full)}", "", "```", _help(command, full, ctx), "```"])
            if isinstance(command, click.Group):
                sub = click.Context(command, info_name=name, parent=ctx, **WIDTH)
                walk(command, sub, full)

    walk(cli, root, ["pitr"])
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
