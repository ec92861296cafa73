"""What ``pitr check`` reports: one item per step (name, outcome, detail, time) and the first
error, which decides the exit code. The engines add their own items to the same report; its
document is ``pitr.cli.documents.check``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pitr.errors import PitrError


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    seconds: float | None = None


@dataclass
class CheckReport:
    items: list[CheckItem] = field(default_factory=list)
    error: PitrError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(i.ok for i in self.items)

    def add(self, name: str, ok: bool, detail: str, seconds: float | None = None) -> None:
        self.items.append(CheckItem(name, ok, detail, seconds))

    def step(self, name: str, action: Callable[[], str]) -> bool:
        """Run one timed step; record its outcome; False (and the error) when it failed."""
        started = time.perf_counter()
        try:
            detail = action()
        except PitrError as exc:
            self.add(name, False, exc.message, time.perf_counter() - started)
            self.error = self.error or exc
            return False
        self.add(name, True, detail, time.perf_counter() - started)
        return True
