"""Standby backups on PostgreSQL 15 beyond the story of test_pg_standby.py (docs/postgresql.md,
"Backups from a standby"; docs/exit-codes.md):

- A full backup of the standby planned to a transaction, an LSN and a restore point, restored
  to the transaction.
- ``check`` on a standby: both connections and the round trip (a switch on the primary whose
  segment the standby archives); the primary unreachable is exit 6 naming it, for ``backup``
  too; without a primary, the last segment the standby archived must be in the repository. A
  standby that does not archive (``archive_mode = on``) is refused by both.
- ``backup`` without a primary waits, saying so, for the primary to complete the segment; when
  it never does, exit 6 naming the remedy, nothing published.
- A promotion while the files are copied (``pg_backup_stop`` refuses) and one while the backup
  waits for its WAL: exit 6, one error line, nothing published, ``list`` unchanged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from clirun import Done, wait_for
from pg_e2e import assert_at_point, before_target, damage
from servers.common import free_port
from standby_e2e import Pair, backup_dirs, destroy_pair, make_pair, manifests, standby_pair

STEPS = [
    "reachable",
    "version",
    "wal_level",
    "archive_mode",
    "archive_command",
    "primary",
    "archive round trip",
    "full backup of this system",
]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with standby_pair(15) as pair:
        pair.primary.sql("CREATE DATABASE hold")
        pair.primary.sql("CREATE TABLE filler (id int, v text)")
        pair.primary.sql(
            "CREATE TABLE markers (name text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
        )
        yield pair


def steps(report: dict[str, object]) -> dict[str, tuple[bool, str]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    prefix = "instance main: "
    return {
        c["name"][len(prefix) :]: (c["ok"], c["detail"])
        for c in checks
        if c["name"].startswith(prefix)
    }


def open_segment(pair: Pair) -> None:
    """WAL in the primary's current segment and a checkpoint there, replayed: the standby's
    next backup stops in a segment that only the primary can complete."""
    pair.primary.sql("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 100) g")
    pair.checkpoint()


def wait_for_line(proc: subprocess.Popen[str], text: str, seen: list[str]) -> None:
    """Read ``proc``'s stderr until a line containing ``text`` (all lines kept in ``seen``)."""
    assert proc.stderr is not None
    while line := proc.stderr.readline():
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"pitr ended without logging {text!r}: {''.join(seen)}")


def finished(proc: subprocess.Popen[str], seen: list[str], args: tuple[str, ...]) -> Done:
    out, err = proc.communicate(timeout=300)
    return Done(args, proc.returncode, out, "".join(seen) + err)


TARGETS = ("xid", "lsn", "restore-point")


def test_each_target_from_a_standby_backup(pair: Pair) -> None:
    """Each target after a standby's full: planned from it; restored beside for ``--xid`` (the
    time and the latest WAL: test_pg_standby.py; the LSN and the restore point replay the same
    archived WAL and only need the planner to take the standby's end as the backup's)."""
    site = pair.site
    for kind in TARGETS:
        table = kind.replace("-", "_")
        site.sql(f"CREATE TABLE {table} AS SELECT g AS id, md5(g::text) AS v "
                 "FROM generate_series(1, 500) g")  # fmt: skip
    full = site.backup("full")
    points = []
    for kind in TARGETS:
        points.append(before_target(site, kind, kind.replace("-", "_")))
        damage(site, points[-1])
    pair.archive_now()
    for kind, point in zip(TARGETS, points, strict=True):
        plan = site.ok("plan", *point.option(kind))["plan"]
        assert plan["recoverable"] is True
        assert [(s["action"], s.get("backup")) for s in plan["steps"][:1]] == [
            ("restore_full", full["id"])
        ]
    with site.restore(*points[0].option("xid")) as (doc, cluster):
        assert doc["recovered_from_backup"] == full["id"]
        assert_at_point(cluster, points[0])


def test_a_standby_that_does_not_archive_is_refused(pair: Pair) -> None:
    pair.standby.configure({"archive_mode": "on"})  # a standby archives only with "always"
    pair.standby.restart(wait_for_primary=False)
    try:
        done = pair.site.fails(6, "check")
        assert done.error == (
            "error: instance main: archive_mode is 'on' on a standby, which archives only with "
            "'always'"
        )
        done = pair.site.fails(6, "backup", "--type", "full")
        assert done.error.startswith("error: instance main is a standby with archive_mode = on")
        assert "HINT: set archive_mode = always and archive_command" in done.stderr
    finally:
        pair.standby.configure({"archive_mode": "always"})
        pair.standby.restart(wait_for_primary=False)


def test_the_primary_unreachable(pair: Pair) -> None:
    port = free_port()
    config = pair.variant("unreachable.toml", primary_port=port)
    done = pair.site.fails(6, "check", config=config)
    assert done.error.startswith(f"error: instance main: cannot connect to its primary at "
                                 f"127.0.0.1:{port}: ")  # fmt: skip
    assert "HINT: check primary_host, primary_port and primary_user" in done.stderr
    found = steps(pair.site.run("check", "--json", config=config).json())
    assert list(found) == STEPS[: STEPS.index("primary") + 1]
    assert found["primary"][0] is False

    before = pair.site.ok("list")["backups"]
    done = pair.site.fails(6, "backup", "--type", "full", config=config)
    assert f"cannot connect to its primary at 127.0.0.1:{port}" in done.error
    assert pair.site.ok("list")["backups"] == before


def test_without_a_primary_the_backup_waits_for_the_segment(pair: Pair) -> None:
    alone = pair.variant("alone.toml", primary_port=None)
    open_segment(pair)
    args = ("backup", "--type", "full", "--json")
    proc = pair.popen(*args, config=alone)
    seen: list[str] = []
    wait_for_line(proc, "waiting up to 120 s for WAL segment", seen)
    assert "no primary_host: pitr cannot switch WAL there" in seen[-1]
    pair.primary.sql("SELECT pg_switch_wal()")  # what archive_timeout would do
    done = finished(proc, seen, args)
    assert done.returncode == 0, str(done)
    backup = done.json()["backup"]
    assert backup["id"] in {b["id"] for b in pair.site.ok("list")["backups"]}


def test_without_a_primary_a_segment_never_completed_is_an_error(pair: Pair) -> None:
    hasty = pair.variant("hasty.toml", primary_port=None, extra="archive_wait = 2\n")
    before = pair.site.ok("list")["backups"]
    open_segment(pair)
    done = pair.site.fails(6, "backup", "--type", "full", config=hasty)
    assert done.error.endswith(
        ", needed to restore this backup, was not completed and archived within 2 s: "
        "the backup is not published"
    ), done.error
    assert done.stderr.strip().splitlines()[-1] == (
        "HINT: set primary_host (with primary_port, primary_user) in [instances.main] so that "
        "pitr switches WAL on the primary, or set archive_timeout on the primary"
    )
    assert pair.site.ok("list")["backups"] == before


def test_a_promotion_while_the_files_are_copied(pair: Pair) -> None:
    """The backup is held between pg_backup_start and pg_backup_stop while the standby is
    promoted: its look at the tables of database ``hold`` waits for a lock the primary holds
    there (replayed by the standby, released by the promotion)."""
    other = make_pair(15, primary=pair.primary)
    try:
        with psycopg.connect(pair.primary.dsn("hold")) as locker:
            locker.execute("LOCK TABLE pg_class IN ACCESS EXCLUSIVE MODE")
            other.primary.sql("SELECT pg_switch_wal()")  # the lock's WAL flushed and sent
            other.caught_up()
            args = ("backup", "--type", "full")
            proc = other.popen(*args, config=str(other.site.config))
            seen: list[str] = []
            wait_for_line(proc, ": started at", seen)
            wait_for(lambda: other.standby.sql(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
            )[0][0], 30, "the backup to wait for the lock")  # fmt: skip
            assert other.standby.sql("SELECT pg_promote()")[0][0] is True
            done = finished(proc, seen, args)
        assert done.returncode == 6, str(done)
        assert done.error.startswith("error: instance main was promoted during backup ")
        assert done.error.endswith("(it is no longer a standby): the backup is not published")
        assert other.site.ok("list")["backups"] == []
        assert manifests(other.site) == [] and backup_dirs(other.site) != []  # left to clean
    finally:
        destroy_pair(other, primary=False)


def test_a_promotion_while_the_backup_waits_for_its_wal(pair: Pair) -> None:
    other = make_pair(15, primary=pair.primary)
    try:
        alone = other.variant("alone.toml", primary_port=None)
        open_segment(other)
        args = ("backup", "--type", "full")
        proc = other.popen(*args, config=alone)
        seen: list[str] = []
        wait_for_line(proc, "waiting up to", seen)
        assert other.standby.sql("SELECT pg_promote()")[0][0] is True
        done = finished(proc, seen, args)
        assert done.returncode == 6, str(done)
        assert done.error.startswith("error: instance main was promoted during backup ")
        assert "HINT: run pitr backup again" in done.stderr
        assert other.site.ok("list")["backups"] == [] and manifests(other.site) == []
    finally:
        destroy_pair(other, primary=False)
