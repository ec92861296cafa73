"""What a command shows: its result as JSON on stdout with ``--json``, else as text; rich
tables and progress bars only on a TTY. ``rich`` is imported only when it is used.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pitr")


@dataclass
class Output:
    """Per-command output mode, chosen from ``--json`` / ``--quiet`` and whether stdout is a TTY."""

    json_mode: bool = False
    quiet: bool = False
    tty: bool = field(default_factory=sys.stdout.isatty)
    emitted: bool = False

    def emit(self, payload: dict[str, Any], text: str | None = None) -> None:
        """The command's result: ``payload`` as JSON, or ``text`` for people."""
        self.emitted = True
        if self.json_mode:
            sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        elif text is not None and not self.quiet:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    def say(self, text: str) -> None:
        """A line for people only: nothing in JSON mode or with --quiet."""
        if not self.json_mode and not self.quiet:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table: rich on a TTY, aligned plain text otherwise (never in JSON mode)."""
        if self.json_mode or self.quiet:
            return
        if self.tty:
            from rich.console import Console
            from rich.table import Table

            table = Table()
            for col in columns:
                table.add_column(col)
            for row in rows:
                table.add_row(*("" if v is None else str(v) for v in row))
            Console().print(table)
            return
        sys.stdout.write(render_plain_table(columns, rows))
        sys.stdout.flush()

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Progress]:
        """A progress bar on a TTY; elsewhere, a log line every few seconds."""
        if self.tty and not self.json_mode and not self.quiet:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            with RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task(label, total=total)
                yield Progress(lambda n: bar.advance(task, n), total, label)
        else:
            yield Progress(None, total, label)


class Progress:
    """Advances a rich bar, or logs ``label: N% (done/total)`` at most every 5 seconds."""

    def __init__(self, advance: Any, total: int, label: str) -> None:
        self._advance = advance
        self.total = total
        self.label = label
        self.done = 0
        self._last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        if self._advance is not None:
            self._advance(n)
            return
        now = time.monotonic()
        if now - self._last >= 5.0 and self.total:
            self._last = now
            log.info(
                "%s: %d%% (%d/%d)", self.label, self.done * 100 // self.total, self.done, self.total
            )


def render_plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    return "\n".join(lines) + "\n"
