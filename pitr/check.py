"""``pitr check``: is the configuration valid and the repository usable, end to end?

A probe object is written, found in a listing, read back and compared, then deleted, each step
timed. The first failing step stops the check; its error decides the exit code.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pitr.errors import (
    ObjectNotFound,
    PitrError,
    StorageUnavailable,
    VerificationFailed,
    error_dict,
)
from pitr.storage.base import Storage

if TYPE_CHECKING:
    from pitr.config import Settings

PROBE_PREFIX = ".pitr-check/"
PROBE_SIZE = 64 * 1024


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


def check_repository(storage: Storage, report: CheckReport) -> None:
    """Write, list, read back and delete a probe object, timing each step."""
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    payload = os.urandom(PROBE_SIZE)
    expected = hashlib.sha256(payload).hexdigest()

    def write() -> str:
        result = storage.put_bytes(key, payload, if_absent=storage.supports_create_if_absent)
        if result.sha256 != expected:
            raise VerificationFailed(f"{key}: written checksum differs from the probe's")
        return f"wrote {key} ({PROBE_SIZE} bytes)"

    def listed() -> str:
        keys = [info.key for info in storage.list(PROBE_PREFIX)]
        if key not in keys:
            raise StorageUnavailable(f"{storage.describe()}: the probe {key} is not listed")
        return f"listed {len(keys)} object(s) under {PROBE_PREFIX}"

    def read_back() -> str:
        if hashlib.sha256(storage.get_bytes(key)).hexdigest() != expected:
            raise VerificationFailed(f"{key}: read back different bytes")
        return "read back intact (sha256 matches)"

    def delete() -> str:
        storage.delete(key)
        try:
            storage.stat(key)
        except ObjectNotFound:
            return "deleted"
        raise StorageUnavailable(f"{storage.describe()}: the probe {key} survived its delete")

    try:
        for name, action in (("write", write), ("list", listed), ("read", read_back)):
            if not report.step(f"repository {name}", action):
                return
    finally:
        if report.items and report.items[0].ok:
            report.step("repository delete", delete)


def run_checks(settings: Settings, instance: str | None) -> CheckReport:
    """Everything ``pitr check`` checks, in order: the configuration, the repository end to
    end, then the engine checks of the instance (or of every configured one). The first
    failing step stops the rest; it is ``report.error``."""
    from pitr.engines.base import engine_for
    from pitr.planning import open_catalog
    from pitr.storage import open_storage

    report = CheckReport()
    report.add("config", True, f"{settings.source} is valid")
    names = [settings.instance(instance).name] if instance else sorted(settings.instances)
    for name in names:
        report.add(f"instance {name}", True, f"engine {settings.instances[name].engine}")
    report.step("repository open", lambda: open_storage(settings.repository).describe())
    if report.error is None:
        check_repository(open_storage(settings.repository), report)
    if report.error is None and settings.repository.encryption == "age":
        from pitr.crypt.probe import check_encryption

        check_encryption(open_storage(settings.repository), settings, report)
    for name in names:
        if report.error is None:
            inst = settings.instances[name]
            engine_for(settings, inst).check(open_catalog(settings, inst), report)
    return report
