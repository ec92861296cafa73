"""What the last ``backup``/``archive``/``verify`` run of an instance did, and how a running
follower (``archive --follow``) keeps up: small JSON files beside the instance lock, read by
``pitr status`` for its metrics (docs/monitoring.md).

One file per instance and command, ``<lock_dir>/<instance>.last-<command>.json``, and one per
follower, ``<lock_dir>/<instance>.follow.json``; each is replaced whole (written to a temporary
file, then renamed), so a reader never sees half of one and two commands never race on a file.
They are local to the host and the OS user running pitr (``lock_dir``, configuration); the
repository stays the truth about backups and logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pitr.domain.timeutil import format_time, from_document

RECORDED = ("backup", "archive", "verify")
FORMAT = 1


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one run: when it ended, how long it took, its exit code."""

    command: str
    started: datetime
    finished: datetime
    exit_code: int
    message: str | None
    last_success: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def _path(lock_dir: str, instance: str, what: str) -> Path:
    return Path(lock_dir) / f"{instance}.{what}.json"


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same directory, flushed,
    then renamed over it (readers see the old content or the new, never a part)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path: Path) -> dict[str, Any] | None:
    """A state document, or None when absent or unreadable (it is only a hint for monitoring)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def record_run(
    lock_dir: str,
    instance: str,
    command: str,
    started: datetime,
    finished: datetime,
    exit_code: int,
    message: str | None,
) -> None:
    """Replace the instance's record of ``command`` with this run (keeping the time of the
    last success when this one failed). Raises OSError when ``lock_dir`` is not writable."""
    path = _path(lock_dir, instance, f"last-{command}")
    previous = read_run(lock_dir, instance, command)
    last_success = finished if exit_code == 0 else previous.last_success if previous else None
    doc = {
        "format": FORMAT,
        "kind": "run",
        "instance": instance,
        "command": command,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": format_time(started),
        "finished": format_time(finished),
        "exit_code": exit_code,
        "message": message,
        "last_success": format_time(last_success),
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(path, json.dumps(doc, indent=1) + "\n")


def read_run(lock_dir: str, instance: str, command: str) -> RunRecord | None:
    doc = _read(_path(lock_dir, instance, f"last-{command}"))
    if doc is None:
        return None
    try:
        started, finished = from_document(doc["started"]), from_document(doc["finished"])
        if started is None or finished is None:
            return None
        return RunRecord(
            command,
            started,
            finished,
            int(doc["exit_code"]),
            doc.get("message"),
            from_document(doc.get("last_success")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write_follow(lock_dir: str, instance: str, state: dict[str, Any]) -> None:
    """A follower's heartbeat (``state`` with times as datetimes or None)."""
    doc = {"format": FORMAT, "kind": "follow", "instance": instance, "pid": os.getpid()}
    doc.update({k: format_time(v) if isinstance(v, datetime) else v for k, v in state.items()})
    path = _path(lock_dir, instance, "follow")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(path, json.dumps(doc, indent=1) + "\n")


def read_follow(lock_dir: str, instance: str) -> dict[str, Any] | None:
    """The follower's last heartbeat document, times as datetimes (None: no follower ran)."""
    doc = _read(_path(lock_dir, instance, "follow"))
    if doc is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        for key in ("heartbeat", "caught_up", "started", "stopped"):
            doc[key] = from_document(doc.get(key))
        return doc
    return None
