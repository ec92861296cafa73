"""The PostgreSQL end-to-end suites' own fixture: a fresh site per test (a module may override
it with a wider scope)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_e2e import Site, fresh_file_site


@pytest.fixture
def site() -> Iterator[Site]:
    """A PostgreSQL cluster archiving into a file repository, destroyed after the test."""
    with fresh_file_site() as site:
        yield site
