"""How a ``backup``/``archive``/``verify`` run ended, recorded for ``pitr status``'s metrics
(``storage.runstate``) with the ``[status] textfile`` refreshed (docs/monitoring.md)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime

from pitr.commands.metrics import write_textfiles
from pitr.config.settings import Settings
from pitr.domain.timeutil import utcnow
from pitr.errors import LockHeld, PitrError
from pitr.storage.runstate import record_run

log = logging.getLogger("pitr")


@contextlib.contextmanager
def recorded(settings: Settings, instance: str | None, command: str) -> Iterator[None]:
    """Record how the run inside ends; recording never changes the run's own outcome. A run
    refused because another holds the lock did not happen: not recorded."""
    name = settings.instance(instance).name
    started = utcnow()
    code: int | None = 0
    message = None
    try:
        yield
    except LockHeld:
        code = None
        raise
    except PitrError as exc:
        code, message = exc.exit_code, exc.message
        raise
    except KeyboardInterrupt:
        code, message = 130, "interrupted"
        raise
    except Exception as exc:
        code, message = 1, f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0]
        raise
    finally:
        if code is not None:
            _record(settings, name, command, started, code, message)


def _record(
    settings: Settings, name: str, command: str, started: datetime, code: int, message: str | None
) -> None:
    finished = utcnow()
    try:
        record_run(settings.lock_dir, name, command, started, finished, code, message)
        write_textfiles(settings, [name], finished)
    except OSError as exc:
        log.warning("could not record this run in %s: %s", settings.lock_dir, exc.strerror)
    except PitrError as exc:
        log.warning("%s", exc.message)
