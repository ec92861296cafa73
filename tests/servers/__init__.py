"""Real servers for integration tests: PostgreSQL, MariaDB, moto (S3) and Swift.

Each class starts its server on a free 127.0.0.1 port in its own directory under /tmp and
never touches system-wide instances. The pytest fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .common import ServerStartError, free_port, make_base_dir, wait_until
from .mariadb import MariaDBServer
from .moto import MotoServer
from .postgres import PostgresServer
from .swift import SwiftServer

__all__ = [
    "MariaDBFactory",
    "MariaDBServer",
    "MotoServer",
    "PgFactory",
    "PostgresServer",
    "ServerStartError",
    "SwiftServer",
    "free_port",
    "make_base_dir",
    "wait_until",
]


class PgFactory(Protocol):
    """Type of the ``pg_factory`` fixture."""

    def __call__(
        self,
        *,
        archive_command: str = "/bin/true",
        gucs: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        start: bool = True,
    ) -> PostgresServer: ...


class MariaDBFactory(Protocol):
    """Type of the ``mariadb_factory`` fixture."""

    def __call__(
        self, *, extra_args: Sequence[str] = (), init: bool = True, start: bool = True
    ) -> MariaDBServer: ...
