"""What must be refused, on a real MariaDB: gaps in the binlogs (purged before pitr shipped
them, or an object gone from the repository), a corrupted object, bad targets — each one line
on stderr with its documented exit code, nothing changed on disk."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import wait_for
from my_e2e import (
    VERSIONS,
    Restored,
    Site,
    file_site,
    keep_pristine,
    mark,
    pristine,
    public_dir,
    remove_tree,
    root_of,
    seed,
)
from servers.common import free_port


@dataclass
class Story:
    site: Site
    repo: Path
    full_id: str
    gtid: str  # in the first binlog after the full
    names: list[str]  # archived binlogs, oldest first


@pytest.fixture(scope="module", params=VERSIONS)
def shared(request: pytest.FixtureRequest) -> Iterator[Story]:
    site = file_site(public_dir(), root=root_of(request.param))
    try:
        seed(site, ("orders",))
        full = site.backup("full")
        mark(site, "one")
        gtid = site.gtid()
        site.flush()
        mark(site, "two")
        site.flush()
        mark(site, "three")
        site.flush()
        site.archive()
        names = [e["log"] for e in site.ok("events")["events"]]
        repo = site.repo_dir  # type: ignore[attr-defined]
        keep_pristine(site, repo)
        yield Story(site, repo, full["id"], gtid, sorted(set(names)))
    finally:
        site.destroy()


@pytest.fixture
def story(shared: Story) -> Story:
    """The shared story with its repository as it was after the setup (tests damage it)."""
    pristine(shared.site, shared.repo)
    return shared


def test_a_binlog_object_gone_from_the_repository(story: Story) -> None:
    site = story.site
    second = story.names[-2]
    (data,) = story.repo.glob(f"main/logs/*/{second}.zst")
    data.unlink()  # its index document remains
    done = site.fails(4, "plan", "--latest")
    assert f"missing binlog {second}" in done.stderr
    doc = site.run("plan", "--latest", "--json").json()["plan"]
    assert doc["recoverable"] is False and second in doc["problems"][0]
    site.ok("plan", "--gtid", story.gtid)  # before the hole: fine


def test_a_corrupted_backup_object(story: Story) -> None:
    site = story.site
    (obj,) = story.repo.glob(f"main/backups/{story.full_id}/backup.xbstream.zst")
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    done = site.fails(8, "verify")
    assert obj.name in done.stderr
    dest = site.base / "never"
    done = site.fails(8, "restore", "--latest", "--to", str(dest), "--port", "1")
    assert not dest.exists() and not list(site.base.glob(".never*"))
    empty = site.base / "empty"
    empty.mkdir()
    site.fails(8, "restore", "--latest", "--to", str(empty))
    assert empty.is_dir() and not list(empty.iterdir())


def test_bad_targets(story: Story) -> None:
    site = story.site
    assert "not a MariaDB GTID" in site.fails(2, "plan", "--gtid", "0-1").stderr
    assert "--lsn is not a target for mariadb" in site.fails(2, "plan", "--lsn", "0/1").stderr
    site.fails(2, "plan", "--xid", "1234")
    site.fails(2, "plan", "--gtid", "0-1-1", "--at", "2026-01-01T00:00:00Z")
    done = site.fails(4, "plan", "--gtid", "0-1-9999")
    assert "0-1-9999 is not in the archived binlogs" in done.stderr
    assert "0-1-" in done.stderr.split("they hold", 1)[1]
    done = site.fails(4, "plan", "--at", "2001-01-01T00:00:00Z")
    assert "no backup is at or before the target" in done.stderr
    busy = site.base / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    done = site.fails(6, "restore", "--latest", "--to", str(busy))
    assert "not empty" in done.stderr and (busy / "keep.txt").read_text() == "mine"
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


def test_a_binlog_purged_before_it_was_shipped(story: Story) -> None:
    site = story.site
    mark(site, "four")
    site.flush()
    lost = str(site.sql("SHOW BINARY LOGS")[-2][0])
    mark(site, "five")
    site.flush()
    site.sql("PURGE BINARY LOGS TO %s", str(site.sql("SHOW BINARY LOGS")[-2][0]))
    archived = site.archive()
    assert archived["gaps"] and lost in archived["gaps"][0]
    done = site.fails(4, "plan", "--latest")
    assert f"missing binlog {lost}" in done.stderr
    site.ok("plan", "--gtid", story.gtid)


def test_a_state_file_left_in_the_restored_directory(story: Story) -> None:
    """A ``mysql-bin.state`` appearing in the new directory (an earlier server there still
    shutting down) gives the restored server a GTID state it did not write; its fresh binlog
    is reset before the backup's state is set, so the restore completes."""
    site = story.site
    port = free_port()
    dest = site.base / f"r{port}"
    planted = threading.Event()

    def plant() -> None:
        wait_for((dest / "backup-my.cnf").exists, 120, "the extracted base")
        (dest / "mysql-bin.state").write_text("0-1-999999\n")
        planted.set()

    planter = threading.Thread(target=plant, daemon=True)
    planter.start()
    restored = Restored(dest, port)
    try:
        done = site.run("restore", "--latest", "--to", str(dest), "--port", str(port), "--json")
        restored.track()
        assert done.returncode == 0, str(done)
        assert planted.is_set()
        assert {"one", "two", "three"} <= restored.markers()
        assert restored.gtid().startswith("0-1-") and "999999" not in restored.gtid()
    finally:
        planter.join(1)
        restored.stop()
        remove_tree(dest)
