"""MariaDB: ``archive --follow`` stopped by SIGTERM or SIGINT (it ships what is complete and
exits 0, as documented for a service) or killed with its whole job (left unreaped: the next
follower takes its lock over); a bit flipped in a stored binlog: ``verify`` exit 8 naming it,
``restore`` and ``recover`` refuse before the instance is touched; ``restore --to`` a file
system too small: refused up front, or one line when it fills up anyway, during replay too
(where the server would wait for space for ever); ``recover`` whose replay fills the
instance's binlog file system: one line, the instance runs, and recover again completes."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import wait_for
from faultkit import (
    FillWhen,
    MiB,
    ballast,
    flipped,
    kill_job_unreaped,
    launch,
    lock_object,
    mount_tmpfs,
    reap,
    tmpfs,
    unmount,
)
from my_e2e import Site, file_site, mark, public_dir, seed
from my_faults import BULK, fill_up_during_replay, write_bulk
from servers.mariadb import MariaDBServer


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    site = file_site(public_dir())
    try:
        seed(site, ("victim",))
        site.backup("full")
        yield site
    finally:
        site.destroy()


def repo(site: Site) -> Path:
    path: Path = site.repo_dir  # type: ignore[attr-defined]
    return path


def archived(site: Site) -> int:
    """How many binlogs the repository holds."""
    return sum(s["logs"] for s in site.ok("list")["logs"])


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "kill -9"])
def test_follow_stopped(site: Site, sig: str) -> None:
    follower = launch(site, "archive", "--follow", "--json")
    try:
        wait_for(lambda: lock_object(repo(site), "follow").exists(), 60, "the follower")
        before = archived(site)
        mark(site, f"followed-{sig}")
        site.flush()
        wait_for(lambda: archived(site) > before, 60, "the follower to ship it")
        if sig == "kill -9":
            kill_job_unreaped(follower)
            assert lock_object(repo(site), "follow").exists()
        else:
            follower.send_signal(getattr(signal, sig))
            out, err = follower.communicate(timeout=60)
            assert follower.returncode == 0, err
            assert json.loads(out)["stopped_by"] == "signal"
            assert not lock_object(repo(site), "follow").exists()
        before = archived(site)
        mark(site, f"after-{sig}")
        site.flush()
        done = site.run("archive", "--follow", "--for", "3", "--json")  # the next plain run
        assert done.returncode == 0, str(done)
        assert archived(site) > before
    finally:
        reap(follower)


def test_a_flipped_bit_in_a_binlog(site: Site) -> None:
    mark(site, "kept")
    site.flush()
    site.archive()
    (path,) = sorted(repo(site).glob("main/logs/*/mysql-bin.*.zst"))[-1:]
    pid = site.server_pid()
    datadir = site.server.datadir
    with flipped(path):
        assert path.name in site.fails(8, "verify").stderr
        dest = site.base / "never"
        assert path.name in site.fails(8, "restore", "--latest", "--to", str(dest)).stderr
        assert not dest.exists() and not list(site.base.glob(".never*"))
        assert path.name in site.fails(8, "recover", "--latest", "--yes").stderr
        assert sorted(p.name for p in datadir.parent.iterdir() if p.name.startswith(
            datadir.name)) == [datadir.name]  # fmt: skip
        assert "kept" in site.markers() and site.server_pid() == pid
    assert site.ok("verify")["failed"] == []


def test_restore_to_a_file_system_too_small(site: Site) -> None:
    with tmpfs(640 * MiB) as mount:
        dest = mount / "restored"
        keep = ballast(mount, leave=200 * MiB)  # less than the base and its 256 MiB redo log
        done = site.fails(6, "restore", "--latest", "--to", str(dest))
        assert f"not enough space for the restore in {dest}" in done.stderr
        assert not dest.exists()
        keep.unlink()
        with FillWhen(mount, (dest / "ibdata1").exists) as filler:
            done = site.fails(6, "restore", "--latest", "--to", str(dest))
        assert filler.filled.is_set()
        assert f"the file system of {dest} ran out of space during the " in done.stderr
        assert not dest.exists() and not list(mount.glob(".restored*"))
        restored = site.ok("restore", "--latest", "--to", str(dest))["recovery"]  # the next run
        assert restored["status"] == "RESTORED" and (dest / "ibdata1").is_file()


def test_the_file_system_fills_up_during_replay(site: Site) -> None:
    """The restored server waits for space when its binlog cannot be written (retrying every
    minute, for ever): pitr sees it waiting and kills it (its own, thrown away)."""
    done = fill_up_during_replay(site, "REPEAT(MD5(RAND()), 32768)", 800 * MiB)
    assert re.search(r"INFO mariadb at /\S+/restored killed$", done.stderr, re.M), done.stderr


class SmallBinlogFs(MariaDBServer):
    """A server whose binlog directory is a file system of its own, of 256 MiB."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mount_tmpfs(self.binlog_dir, 256 * MiB)

    def destroy(self) -> None:
        try:
            self.stop(timeout=30)
        finally:
            unmount(self.binlog_dir)
            super().destroy()


class SmallBinlogSite(Site):
    server_class = SmallBinlogFs


def test_the_binlog_file_system_fills_up_during_recover() -> None:
    """``recover`` replays through the instance's own server, which waits for space when its
    binlog cannot be written: pitr stops the replay (one line, exit 6, within seconds, naming
    the file system), the instance runs on, the replaced data directory is kept; with room,
    recover again completes."""
    base = public_dir()
    (base / "repo").mkdir()
    site = SmallBinlogSite(base, f'url = "file://{base / "repo"}"', managed=True)
    try:
        seed(site, ("victim",))
        site.backup("full")
        write_bulk(site, "REPEAT(MD5(RAND()), 32768)")
        binlogs = site.server.binlog_dir
        keep = ballast(binlogs, leave=16 * MiB)  # less than the replay writes there
        began = time.monotonic()
        done = site.fails(6, "recover", "--latest", "--yes", timeout=120)
        took = time.monotonic() - began
        assert f"the file system of {binlogs} ran out of space during the replay" in done.stderr
        assert "mariadb runs on what was replayed so far: recover again" in done.stderr
        assert "the replaced data directory is kept at " in done.stderr
        assert f"the replaced server's binlogs are in {binlogs}/pitr-" in done.stderr
        assert took < 45, took
        assert site.server_pid() is not None and site.one("SELECT 1") == 1  # it runs
        keep.unlink()
        doc = site.ok("recover", "--latest", "--yes", timeout=300)["recovery"]
        assert doc["status"] == "ACTIVE"
        assert site.one("SELECT COUNT(*) FROM shop.bulk") == BULK
    finally:
        site.destroy()
