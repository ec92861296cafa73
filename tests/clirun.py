"""What the end-to-end suites share: the ``pitr`` under test, a finished run of it, polling."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PITR = Path(sys.executable).parent / "pitr"
INSTANCE = "main"
CLI_TIMEOUT = 300.0


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Done:
    """A finished ``pitr`` run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one ``error:`` line, last on stderr but for an optional ``HINT:`` line (log
        lines may come before it)."""
        lines = self.stderr.strip().splitlines()
        errors = [n for n, line in enumerate(lines) if line.startswith("error: ")]
        assert len(errors) == 1, str(self)
        assert errors[0] >= len(lines) - 2, str(self)
        assert all(line.startswith("HINT: ") for line in lines[errors[0] + 1 :]), str(self)
        return lines[errors[0]]

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.stdout)
        return doc

    def __str__(self) -> str:
        return (
            f"pitr {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )
