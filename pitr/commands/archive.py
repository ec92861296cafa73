"""``pitr archive``: ship the logs not yet in the repository (``--follow``: keep streaming)."""

from __future__ import annotations

from pitr.commands.locks import lock_for
from pitr.config.settings import Settings
from pitr.engines import engine_and_store
from pitr.engines.base import Archived
from pitr.errors import UsageError


def archive(
    settings: Settings,
    instance: str | None,
    follow: bool,
    seconds: float | None,
    lock_wait: float,
) -> Archived:
    """What the engine shipped."""
    if seconds is not None and not follow:
        raise UsageError("--for applies to --follow")
    engine, store = engine_and_store(settings, instance)
    # A follower runs for days: it holds its own lock, so backups and expiry still run.
    with lock_for(
        settings,
        store,
        "archive --follow" if follow else "archive",
        lock_wait,
        resource="follow" if follow else "instance",
    ):
        return engine.archive(store, follow=follow, duration=seconds)
