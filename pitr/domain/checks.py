"""What ``pitr check`` reports: one item per step (name, outcome, detail, time) and the first
error, which decides the exit code. The engines add their own items to the same report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pitr.errors import PitrError, error_dict


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        ms = None if self.seconds is None else round(self.seconds * 1000, 1)
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "ms": ms}


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

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": self.ok, "checks": [i.to_dict() for i in self.items]}
        if self.error is not None:
            doc["error"] = error_dict(self.error)
        return doc
