"""Fixtures starting real servers (see ``tests/servers``).

Session-scoped: ``moto_server``, ``swift_server``, ``pg_server``, ``mariadb_server``.
Per test: ``pg_factory``, ``mariadb_factory`` (fresh servers, destroyed after the test) and
``public_tmp_dir``. A server that cannot start makes the test ERROR; nothing is skipped.
Directories are removed at the end unless ``PITR_KEEP_TEST_DIRS=1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from servers import (
    MariaDBFactory,
    MariaDBServer,
    MotoServer,
    PgFactory,
    PostgresServer,
    SwiftServer,
)
from servers.common import cleanup_all, make_base_dir, remove_dir
from servers.postgres import MAJORS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-versions",
        dest="pg_versions",
        default=",".join(str(m) for m in MAJORS),
        help="PostgreSQL major versions the version-matrix stories run on (comma-separated; "
        "default: every supported one)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Kill anything the harness started that is still alive; remove its directories."""
    cleanup_all()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server for the session; use unique bucket names (or ``reset()``)."""
    server = MotoServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def swift_server() -> Iterator[SwiftServer]:
    """One Swift all-in-one for the session; use unique container names."""
    server = SwiftServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A shared running PostgreSQL (archive_command ``/bin/true``); don't stop or reconfigure."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A shared running MariaDB; don't stop it or purge its binlogs."""
    server = MariaDBServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_factory() -> Iterator[PgFactory]:
    """``pg_factory(archive_command=..., gucs=..., env=..., init=True, start=True)``.

    Each call makes a new cluster; all are stopped and removed after the test.
    """
    created: list[PostgresServer] = []

    def make(
        *,
        archive_command: str = "/bin/true",
        gucs: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        init: bool = True,
        start: bool = True,
    ) -> PostgresServer:
        server = PostgresServer(archive_command=archive_command, gucs=gucs, env=env)
        created.append(server)
        if init:
            server.init()
            if start:
                server.start()
        return server

    yield make
    _destroy_all(created)


@pytest.fixture
def mariadb_factory() -> Iterator[MariaDBFactory]:
    """``mariadb_factory(extra_args=("--gtid-strict-mode=1",), init=True, start=True)``.

    Each call makes a new server; all are stopped and removed after the test.
    """
    created: list[MariaDBServer] = []

    def make(
        *, extra_args: Sequence[str] = (), init: bool = True, start: bool = True
    ) -> MariaDBServer:
        server = MariaDBServer(extra_args=extra_args)
        created.append(server)
        if init:
            server.init()
            if start:
                server.start()
        return server

    yield make
    _destroy_all(created)


@pytest.fixture
def public_tmp_dir() -> Iterator[Path]:
    """An empty mode-0777 directory under /tmp that every OS user (e.g. postgres) can use."""
    path = make_base_dir("pitr-tmp-")
    path.chmod(0o777)
    yield path
    remove_dir(path)


def _destroy_all(servers: Sequence[PostgresServer | MariaDBServer]) -> None:
    """Destroy every server even if one fails; re-raise the first failure."""
    first: BaseException | None = None
    for server in reversed(servers):
        try:
            server.destroy()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first
