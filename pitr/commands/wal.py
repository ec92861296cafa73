"""PostgreSQL's archive_command and restore_command, without the command line around them.

``pitr wal-push %p`` and ``pitr wal-fetch %f %p`` run once per WAL segment, and PostgreSQL
waits for each: their process start-up is on the archiver's and the replay's critical path.
:mod:`pitr.entry` answers their plain forms with these functions before click and the other
commands are imported; ``pitr.cli`` calls the same functions for every other form (``--json``,
``--debug``), so both give the same result. Imports here stay light.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pitr.errors import PitrError, UsageError

if TYPE_CHECKING:
    from pitr.catalog.store import CatalogStore
    from pitr.config.settings import Settings
    from pitr.engines.postgresql import PostgresEngine

#: archive_command and restore_command keep retrying storage errors this long (docs/postgresql.md)
STORAGE_PATIENCE = 60.0


def open_postgres(
    settings: Settings, instance: str | None, command: str
) -> tuple[PostgresEngine, CatalogStore]:
    """The PostgreSQL instance's engine and catalog store, patient with the repository."""
    from pitr import crypt
    from pitr.catalog.store import CatalogStore
    from pitr.engines.postgresql import PostgresEngine
    from pitr.storage import open_storage

    inst = settings.instance(instance)
    if inst.engine != "postgresql":
        raise UsageError(f"{command} is for PostgreSQL instances; {inst.name} is {inst.engine}")
    repo = replace(settings.repository, timeout=max(settings.repository.timeout, STORAGE_PATIENCE))
    if repo.encryption != "none" or repo.identity_file is not None:
        from pitr.crypt.keyring import keyring_for

        crypt.install(keyring_for(repo, settings.source))
    store = CatalogStore(open_storage(repo), inst.name, inst.engine)
    return PostgresEngine(settings, inst), store


def push(settings: Settings, instance: str | None, path: str) -> tuple[bool, str]:
    """Archive one file from ``pg_wal``: (pushed now, the line to print)."""
    engine, store = open_postgres(settings, instance, "wal-push")
    pushed = engine.wal_push(store, Path(path))
    name = Path(path).name
    return pushed, f"{name} {'archived' if pushed else 'was already archived'}"


def push_async(settings: Settings, instance: str | None, path: str) -> str:
    """Hand ``path`` to the resident archiving worker (starting it if none runs) and wait
    for its answer: the line to print, or ``WorkerAnswer`` with the worker's exit code."""
    from pitr.engines.postgresql.asyncpush import spool_for, wait_for

    inst = settings.instance(instance)
    if inst.engine != "postgresql":
        raise UsageError(f"wal-push is for PostgreSQL instances; {inst.name} is {inst.engine}")
    config = None if settings.source == "environment" else str(Path(settings.source).absolute())
    spool = spool_for(settings.spool_dir, inst.name)
    code, message = wait_for(spool, Path(path), config, inst.name)
    if code:
        raise WorkerAnswer(message, code)
    return message


class WorkerAnswer(PitrError):
    """The asynchronous worker could not archive the file: its message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fetch(
    settings: Settings, instance: str | None, name: str, dest: str, spool: str | None
) -> bool:
    """Put WAL file ``name`` at ``dest``; False when the repository does not have it."""
    engine, store = open_postgres(settings, instance, "wal-fetch")
    found = engine.wal_fetch(store, name, Path(dest), Path(spool) if spool else None)
    if not found:
        import logging

        logging.getLogger("pitr").info("%s is not in the repository", name)
    return found
