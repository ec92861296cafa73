"""The PostgreSQL end-to-end suites' own fixtures: a fresh site per test (a module may override
it with a wider scope), and the version matrix.

A test (or a fixture it uses) that asks for ``pg_major`` runs once per PostgreSQL major version
of ``--pg-versions`` (default: all of ``servers.postgres.MAJORS``), module by module, so that a
module-scoped story is told once per version; every other test runs on 15 (Debian's package).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_e2e import Site, fresh_file_site
from servers.postgres import DEFAULT_MAJOR


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_major" in metafunc.fixturenames:
        majors = [int(v) for v in str(metafunc.config.getoption("pg_versions")).split(",")]
        ids = [f"pg{major}" for major in majors]
        metafunc.parametrize("pg_major", majors, ids=ids, scope="module")


@pytest.fixture
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """A PostgreSQL cluster archiving into a file repository, destroyed after the test: of
    the test's ``pg_major`` when it has one, else of the default version."""
    major = DEFAULT_MAJOR
    if "pg_major" in request.fixturenames:
        major = int(request.getfixturevalue("pg_major"))
    with fresh_file_site(major) as site:
        yield site
