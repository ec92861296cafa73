"""Full file systems (size-limited tmpfs, mounted here as root, always unmounted): ``restore
--to`` and an in-place ``recover`` refused up front when the restored files cannot fit, one
clear line (exit 6) when the space runs out anyway, nothing left that could be started, the
instance untouched; ``wal-fetch`` into a full ``pg_wal`` leaves no partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest
from faultkit import FillWhen, MiB, ballast, tmpfs
from pg_e2e import (
    Cluster,
    Site,
    destroy_site,
    file_site,
    make_site,
    mark,
    markers,
    public_dir,
    seed,
    set_aside,
)
from servers import PostgresServer
from servers.common import free_port

IN_PROGRESS = "pitr-restore-in-progress"


def story(site: Site) -> None:
    """A cluster of some 70 MB, a full backup, three markers after it, archived."""
    seed(site, ("victim",))
    site.sql("CREATE TABLE bulk AS SELECT g, md5(g::text) AS v FROM generate_series(1, 400000) g")
    site.backup("full")
    for name in ("a", "b", "c"):
        mark(site, name)
    site.archive_now()


@pytest.fixture(scope="module")
def restorable() -> Iterator[Site]:
    site = file_site(public_dir())
    try:
        story(site)
        yield site
    finally:
        destroy_site(site)


def test_restore_to_a_file_system_too_small(restorable: Site) -> None:
    site = restorable
    with tmpfs(400 * MiB) as mount:
        dest = mount / "restored"
        keep = ballast(mount, leave=20 * MiB)
        done = site.fails(6, "restore", "--latest", "--to", str(dest))
        assert f"not enough space for the restore in {dest}" in done.error
        assert "needs about" in done.error and "MB, its file system has" in done.error
        assert not dest.exists()
        keep.unlink()

        with FillWhen(mount, (dest / "base").exists) as filler:
            done = site.fails(6, "restore", "--latest", "--to", str(dest))
        assert filler.filled.is_set()
        assert f"the file system of {dest} ran out of space during the restore" in done.error
        assert f"{dest} was removed" in done.error
        assert not dest.exists() and not any(p.name != "ballast" for p in mount.iterdir())

        port = free_port()
        cluster = Cluster(dest, port)
        try:
            done = site.run("restore", "--latest", "--to", str(dest), "--port", str(port))
            cluster.track()
            assert done.returncode == 0, str(done)
            assert {"a", "b", "c"} <= markers(cluster)
        finally:
            cluster.stop()


@contextlib.contextmanager
def site_on_tmpfs(size: int) -> Iterator[Site]:
    """A cluster whose directory (data directory, and what recover puts beside it) is a
    tmpfs of ``size`` bytes."""
    with contextlib.ExitStack() as stack:

        def mount(server: PostgresServer) -> None:
            fs = stack.enter_context(tmpfs(size, "pitr-pgfs-"))
            shutil.rmtree(server.base_dir)
            server.base_dir.symlink_to(fs)
            os.chown(fs, server.uid, server.gid)
            fs.chmod(0o755)
            server.make_dir("sock")

        base = public_dir()
        site = make_site(base, f'url = "file://{base / "repo"}"', prepare=mount)
        stack.callback(lambda: site.server.base_dir.unlink(missing_ok=True))
        stack.callback(destroy_site, site)
        yield site


def test_recover_on_a_file_system_too_small() -> None:
    with site_on_tmpfs(400 * MiB) as site:
        story(site)
        datadir = site.server.datadir
        fs = datadir.parent
        pid = site.server.postmaster_pid()
        keep = ballast(fs, leave=24 * MiB)
        done = site.fails(6, "recover", "--latest", "--yes")
        staging = fs / "data.pitr-restoring"
        assert f"not enough space for the recovery in {staging}" in done.error
        assert site.server.postmaster_pid() == pid and not set_aside(site)
        assert not staging.exists()
        keep.unlink()

        ready = (staging / "base").exists
        with FillWhen(fs, ready, leave=24 * MiB) as filler:  # room for the instance's own WAL
            done = site.fails(6, "recover", "--latest", "--yes")
        assert filler.filled.is_set()
        assert f"the file system of {staging} ran out of space during the recovery" in done.error
        assert "the instance was not stopped, nothing was changed" in done.error
        assert site.server.postmaster_pid() == pid and not set_aside(site)
        assert not staging.exists() and {"a", "b", "c"} <= markers(site)

        doc = site.ok("recover", "--latest", "--yes")["recovery"]
        (aside,) = set_aside(site)
        assert doc["previous_datadir"] == str(aside) and (aside / "PG_VERSION").is_file()
        assert {"a", "b", "c"} <= markers(site)


def test_wal_fetch_into_a_full_pg_wal(restorable: Site) -> None:
    """restore_command writing into a full pg_wal: exit 6, one line, no partial file where
    PostgreSQL looks (it asks again); once there is room, the segment arrives whole."""
    site = restorable
    name = _first_segment(site)
    with tmpfs(4 * MiB) as mount:
        dest = mount / "RECOVERYXLOG"
        done = site.fails(6, "wal-fetch", name, str(dest))
        assert f"no space left in {mount} for WAL file {name}" in done.error
        assert list(mount.iterdir()) == []
    with tmpfs(32 * MiB) as mount:
        dest = mount / "RECOVERYXLOG"
        done = site.run("wal-fetch", name, str(dest))
        assert done.returncode == 0, str(done)
        assert dest.stat().st_size == 16 * MiB


def _first_segment(site: Site) -> str:
    events = site.ok("events")["events"]
    return str(events[0]["log"])
