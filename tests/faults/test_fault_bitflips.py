"""One bit flipped in a stored WAL segment and in a stored backup part: ``verify`` exits 8
naming the object; ``restore`` and ``recover`` refuse (exit 8, naming it) before the instance
is touched; with the object intact again, the next plain run succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import flipped
from pg_e2e import (
    INSTANCE,
    Site,
    destroy_site,
    file_site,
    mark,
    markers,
    public_dir,
    seed,
    set_aside,
)
from servers.common import free_port

from pitr.catalog.layout import Layout


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    site = file_site(public_dir())
    try:
        seed(site, ("victim",))
        site.backup("full")
        mark(site, "a")
        site.archive_now()
        mark(site, "b")
        site.archive_now()
        yield site
    finally:
        destroy_site(site)


def damaged_object(site: Site, what: str) -> Path:
    assert site.repo_dir is not None
    if what == "WAL segment":
        last = str(site.one("SELECT last_archived_wal FROM pg_stat_archiver"))
        return site.repo_dir / Layout(INSTANCE).log_object(last[:8], last, ".zst")
    backup = site.ok("list")["backups"][0]["id"]
    return max((site.repo_dir / INSTANCE / "backups" / backup).glob("*.zst"),
               key=lambda p: p.stat().st_size)  # fmt: skip


@pytest.mark.parametrize("what", ["WAL segment", "backup part"])
def test_a_flipped_bit(site: Site, what: str) -> None:
    path = damaged_object(site, what)
    pid = site.server.postmaster_pid()
    with flipped(path):
        done = site.fails(8, "verify")
        assert path.name in done.error
        dest = site.base / f"restored-{free_port()}"
        done = site.fails(8, "restore", "--latest", "--to", str(dest), "--port", str(free_port()))
        assert path.name in done.error
        if what == "backup part":
            assert not dest.exists()
        done = site.fails(8, "recover", "--latest", "--yes")
        assert path.name in done.error and "nothing was changed" in done.error
        assert site.server.postmaster_pid() == pid and not set_aside(site)
        datadir = site.server.datadir
        assert not datadir.with_name(f"{datadir.name}.pitr-restoring").exists()
    assert site.ok("verify")["failed"] == []
    with site.restore("--latest") as (_doc, cluster):
        assert {"a", "b"} <= markers(cluster)
