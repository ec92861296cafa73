"""In-place recovery of a MariaDB instance run by start_command / stop_command (which return
before the server is up or down), with gtid_strict_mode: the mistake is still in the open
binlog when ``recover`` runs; the replaced data directory and binlogs are kept; afterwards
the instance archives a new binlog stream and backs up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from my_e2e import (
    VERSIONS,
    assert_at_point,
    before_target,
    damage,
    drop_event,
    file_site,
    mark,
    public_dir,
    root_of,
    seed,
)


@pytest.mark.parametrize("version", VERSIONS)
def test_recover_in_place_to_just_before_the_drop(version: str) -> None:
    site = file_site(public_dir(), managed=True, extra_args=("--gtid-strict-mode=1",),
                     root=root_of(version))  # fmt: skip
    try:
        seed(site, ("orders",))
        full = site.backup("full")
        site.sql("UPDATE shop.keep SET v = MD5(v) WHERE id <= 50")
        diff = site.backup("diff")
        point = before_target(site, "x", "orders")
        damage(site, point)  # C and the DROP: in the open binlog, not archived yet
        old_pid = site.server_pid()
        done = site.run("recover", "--gtid", point.gtid, "--yes", "--json")  # no TTY
        assert done.returncode == 0, str(done)
        doc = done.json()["recovery"]
        assert doc["status"] == "ACTIVE"
        assert (doc["recovered_from_backup"], doc["differential"]) == (full["id"], diff["id"])
        assert doc["reached"]["gtid"] == point.gtid == site.gtid()
        site.track()
        assert site.server_pid() != old_pid
        assert_at_point(site, point)
        # the replaced data directory and binlogs are kept, as they were
        previous = Path(doc["previous_datadir"])
        assert previous.parent == site.server.datadir.parent and (previous / "shop").is_dir()
        assert not (previous / "shop" / "orders.ibd").exists()
        assert (previous / "shop" / "keep.ibd").exists()
        old_binlogs = Path(doc["previous_binlogs"])
        assert old_binlogs.parent == site.server.binlog_dir
        assert (old_binlogs / "mysql-bin.index").exists()
        # the DROP was secured in the repository before anything was stopped
        assert drop_event(site, "orders")["gtid"] > point.gtid
        # life goes on: a new binlog stream, a differential refused on it, a new full
        mark(site, "after")
        site.flush()
        archived = site.archive()
        assert archived["archived"] >= 1 and archived["gaps"] == []
        streams = site.ok("list")["logs"]
        assert len(streams) == 2
        site.fails(6, "backup", "--type", "diff")
        site.backup("full")
        # retention keeps the new full; the old chain and the old stream's binlogs go
        site.config.write_text(site.config.read_text() + "\n[retention]\nfull = 1\n")
        expired = site.ok("expire")
        assert set(expired["expired_backups"]) == {full["id"], diff["id"]}
        assert len(site.ok("list")["logs"]) == 1
        plan = site.ok("plan", "--latest")["plan"]
        assert plan["recoverable"] and plan["steps"][0]["action"] == "restore_full"
        with site.restore("--latest") as (_doc, restored):
            assert "after" in restored.markers() and "x-C" not in restored.markers()
    finally:
        site.destroy()


def test_recover_with_default_service_commands() -> None:
    """No start_command/stop_command: pitr stops the server with SHUTDOWN, waits for the
    process to exit, and starts it again with the command line it ran with."""
    site = file_site(public_dir())
    try:
        seed(site, ("orders",))
        site.backup("full")
        point = before_target(site, "y", "orders")
        damage(site, point)
        drop = site.gtid()
        done = site.run("recover", "--gtid", drop, "--exclusive", "--yes", "--json")
        assert done.returncode == 0, str(done)
        site.server.proc = None  # the harness' process is gone; pitr started a new one
        site.managed = True
        site.track()
        assert_at_point(site, point, with_c=True)
        assert Path(done.json()["recovery"]["previous_datadir"]).is_dir()
    finally:
        site.destroy()


def test_recover_refuses_without_yes_and_changes_nothing() -> None:
    site = file_site(public_dir())
    try:
        seed(site, ())
        site.backup("full")
        before = site.gtid()
        done = site.fails(2, "recover", "--latest")
        assert "--yes" in done.stderr
        done = site.fails(4, "recover", "--at", "2000-01-01T00:00:00Z", "--yes")
        assert "no backup is at or before the target" in done.stderr
        assert site.gtid() == before and len(site.ok("list")["logs"]) == 1
        assert not list(site.server.datadir.parent.glob("data.pitr-*"))
    finally:
        site.destroy()


def test_an_interrupted_recover_is_run_again() -> None:
    """start_command fails after the swap: exit 7, the replaced directory kept; run again,
    recover completes and never touches what the first run set aside."""
    site = file_site(public_dir(), managed=True)
    try:
        seed(site, ("orders",))
        site.backup("full")
        point = before_target(site, "z", "orders")
        damage(site, point)
        start = site.base / "start.sh"
        good = start.read_text()
        start.write_text("#!/bin/sh\necho 'cannot start today' >&2\nexit 1\n")
        done = site.run("recover", *point.option("gtid"), "--yes")
        assert done.returncode == 7, str(done)
        assert "start_command failed" in done.stderr and "kept at" in done.stderr
        (aside,) = site.server.datadir.parent.glob("data.pitr-*")
        assert not (aside / "shop" / "orders.ibd").exists()
        before = sorted(p.name for p in aside.rglob("*"))
        start.write_text(good)
        done = site.run("recover", *point.option("gtid"), "--yes", "--json")
        assert done.returncode == 0, str(done)
        site.track()
        assert done.json()["recovery"]["previous_datadir"] is None  # ours was redone
        assert_at_point(site, point)
        assert sorted(p.name for p in aside.rglob("*")) == before
    finally:
        site.destroy()
