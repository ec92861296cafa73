"""``pitr recover``: the instance itself, in place — twice, across timelines — and a recovery
killed half-way that the next run completes.

The two stories across timelines run on every PostgreSQL major version (``pg_major``).
Nothing here archives the damage beforehand: ``recover`` must secure the newest WAL itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from pg_e2e import (
    BINDIR,
    Cluster,
    Site,
    assert_at_point,
    before_target,
    controldata,
    damage,
    mark,
    markers,
    move_to_tablespace,
    seed,
    set_aside,
    table_exists,
    tree_digest,
    wait_for,
)
from servers.common import free_port


def test_recover_in_place_twice_across_timelines(site: Site, pg_major: int) -> None:
    seed(site, ("victim",))
    tablespace = move_to_tablespace(site, "victim")
    keep_file = str(site.one("SELECT pg_relation_filepath('keep')"))
    full = site.backup("full")
    first = before_target(site, "one", "victim")
    mark(site, "one-C")
    # A second target on timeline 1, after C: the victim is still there.
    second = before_target(site, "two", "victim")
    damage(site, second)
    mark(site, "end")
    pid = site.server.postmaster_pid()

    # 1. Back to the first target. Its WAL has not been archived yet: recover secures it.
    doc = site.ok("recover", "--at", first.time.isoformat(), "--yes")["recovery"]
    assert doc["status"] == "ACTIVE"
    assert doc["recovered_from_backup"] == full["id"]
    assert doc["differential"] is None
    assert doc["timeline"] == 2
    assert site.server.postmaster_pid() != pid
    previous = Path(doc["previous_datadir"])
    assert set_aside(site) == [previous]
    assert_set_aside(previous, site, keep_file)
    untouched = tree_digest(previous)
    untouched_tablespace = tree_digest(tablespace)

    assert_at_point(site, first)
    assert "one-C" not in markers(site)
    assert not {m for m in markers(site) if m.startswith("two-")}
    assert site.one("SELECT pg_is_in_recovery()") is False
    assert site.one("SELECT timeline_id FROM pg_control_checkpoint()") == 2
    mark(site, "timeline-2")  # written on the new timeline only
    site.archive_now()

    # 2. Back to timeline 1, past the point where timeline 2 branched off.
    plan = site.ok("plan", "--at", second.time.isoformat())["plan"]
    assert plan["recoverable"] is True
    assert plan["timeline"] == 1
    doc = site.ok("recover", "--at", second.time.isoformat(), "--yes")["recovery"]
    assert doc["timeline"] == 3
    assert_at_point(site, second)
    found = markers(site)
    assert {"one-A", "one-B", "one-C"} <= found
    assert "timeline-2" not in found
    assert "end" not in found
    assert datetime.fromisoformat(doc["point_in_time"]) <= second.time

    # The directory the first run set aside was never touched; the second has its own.
    aside = set_aside(site)
    assert len(aside) == 2
    assert previous in aside
    assert Path(doc["previous_datadir"]) in aside
    assert tree_digest(previous) == untouched
    assert tree_digest(tablespace) == untouched_tablespace  # it belongs to ``previous``
    control = controldata(Path(doc["previous_datadir"]), site.server.bindir)
    assert control["Latest checkpoint's TimeLineID"] == "2"


def test_recover_to_a_target_on_timeline_2(site: Site, pg_major: int) -> None:
    """After a first in-place recovery (timeline 2), the mistake happens again on timeline 2:
    the second recovery's target lies on timeline 2 itself, after the branch point."""
    seed(site, ("victim",))
    site.backup("full")
    first = before_target(site, "one", "victim")
    damage(site, first)
    doc = site.ok("recover", "--xid", str(first.xid), "--yes")["recovery"]
    assert doc["timeline"] == 2
    assert_at_point(site, first)

    # On timeline 2: new markers, the target, the same damage again.
    second = before_target(site, "two", "victim")
    damage(site, second)
    mark(site, "end")
    site.archive_now()  # for plan (recover secures the newest WAL itself)
    for kind in ("xid", "at"):
        plan = site.ok("plan", *second.option(kind))["plan"]
        assert plan["recoverable"] is True
        assert plan["timeline"] == 2
    doc = site.ok("recover", *second.option("xid"), "--yes")["recovery"]
    assert doc["timeline"] == 3
    assert doc["reached"]["xid"] == second.xid
    assert_at_point(site, second)
    found = markers(site)
    assert {"one-A", "one-B"} <= found
    assert "one-C" not in found  # timeline 1 after the first target: never on timeline 2
    assert "end" not in found
    assert len(set_aside(site)) == 2


def assert_set_aside(previous: Path, site: Site, keep_file: str) -> None:
    """The instance's directory as recover stopped it, renamed beside it: complete (a copy of
    it starts, archiving off, on its own port) with everything up to that moment."""
    datadir, bindir = site.server.datadir, site.server.bindir
    assert previous.name.startswith(f"{datadir.name}.pitr-")
    assert (previous / "PG_VERSION").read_text().strip() == str(site.server.major)
    assert (previous / keep_file).is_file()
    control = controldata(previous, bindir)
    assert control["Database cluster state"] == "shut down"
    assert control["Latest checkpoint's TimeLineID"] == "1"
    copy = previous.with_name("copy-of-set-aside")
    copies = [copy]
    cluster = Cluster(copy, free_port(), bindir)
    try:
        subprocess.run(["cp", "-a", str(previous), str(copy)], check=True)
        for link in (copy / "pg_tblspc").iterdir():  # the copy gets its own tablespaces too
            location = copy.with_name(f"{copy.name}-tablespace-{link.name}")
            copies.append(location)
            subprocess.run(["cp", "-a", os.readlink(link), str(location)], check=True)
            link.unlink()
            link.symlink_to(location)
        options = f"-p {cluster.port} -c archive_mode=off -c unix_socket_directories={copy}"
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(copy), "-w",
             "-l", str(copy / "copy.log"), "-o", options, "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        cluster.track()
        found = markers(cluster)
        assert {"one-A", "one-B", "one-C", "two-A", "two-B", "two-C", "end"} <= found
        assert not table_exists(cluster, "victim")
    finally:
        cluster.stop()
        for path in copies:
            shutil.rmtree(path, ignore_errors=True)


def pgbench(site: Site, scale: int) -> None:
    """pgbench tables (scale 5: ~75 MB, so that restoring takes long enough to be killed)."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(BINDIR / "pgbench"), "-i", "-s", str(scale), "-q",
         "-h", "127.0.0.1", "-p", str(site.server.port), "-U", "postgres", "postgres"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def kill_when(site: Site, exists: Path, *target: str) -> None:
    """Start ``pitr recover TARGET --yes`` and SIGKILL it as soon as ``exists`` exists."""
    child = site.popen("recover", *target, "--yes", "--json")
    try:
        wait_for(lambda: exists.exists() or child.poll() is not None, 120, f"{exists}")
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()


@pytest.mark.parametrize("when", ["restoring", "replaying"])
def test_recover_killed_half_way_then_run_again(site: Site, when: str) -> None:
    seed(site, ("victim",))
    pgbench(site, 5 if when == "restoring" else 1)
    accounts = site.checksum("pgbench_accounts")
    site.backup("full")
    point = before_target(site, "k", "victim")
    damage(site, point)
    mark(site, "end")
    datadir = site.server.datadir
    target = ("--xid", str(point.xid))

    if when == "restoring":
        # Killed while the base is restored beside the instance: nothing was stopped yet.
        staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
        kill_when(site, staging / "pitr-restore-in-progress", *target)
        assert site.server.is_running()
        assert "end" in markers(site)
        assert not table_exists(site, "victim")
        assert set_aside(site) == []
    else:
        # Killed while PostgreSQL replays: the instance's directory is already set aside.
        kill_when(site, datadir / "pitr-restore-in-progress", *target)
        (previous,) = set_aside(site)
        assert (previous / "PG_VERSION").is_file()
        assert controldata(previous)["Database cluster state"] == "shut down"

    kept = {path: tree_digest(path) for path in set_aside(site)}
    doc = site.ok("recover", *target, "--yes")["recovery"]
    assert_at_point(site, point)
    assert "end" not in markers(site)
    assert site.checksum("pgbench_accounts") == accounts
    for path, digest in kept.items():
        assert tree_digest(path) == digest, f"{path} was touched"
    # The run that completed names the directory set aside (by itself or by the killed run).
    assert set_aside(site) == [Path(doc["previous_datadir"])]
    assert not datadir.with_name(f"{datadir.name}.pitr-restoring").exists()
    assert not (datadir / "pitr-restore-in-progress").exists()
