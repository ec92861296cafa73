"""SIGTERM, SIGINT and SIGKILL (of every process of the job, none of them reaped: they linger
as zombies, which ``kill(pid, 0)`` still finds) in the middle of ``backup``, ``restore`` and
``recover`` on PostgreSQL: exit 130 for the signals pitr can see; after any of them nothing
half-done is visible, the set-aside data directory is never touched, and the next plain run
takes the lock over and completes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import wait_for
from faultkit import interrupt, kill_job_unreaped, launch, lock_object, reap
from pg_e2e import (
    Cluster,
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

IN_PROGRESS = "pitr-restore-in-progress"
KILL = "kill -9"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    site = file_site(public_dir())
    try:
        seed(site, ("victim",))
        site.sql(
            "CREATE TABLE bulk AS SELECT g, md5(g::text) AS v FROM generate_series(1, 600000) g"
        )
        site.backup("full")
        for name in ("a", "b"):
            mark(site, name)
        site.archive_now()
        yield site
    finally:
        destroy_site(site)


def backups(site: Site) -> list[str]:
    return [b["id"] for b in site.ok("list")["backups"]]


def stop_it(proc: object, sig: str) -> tuple[int, str]:
    assert hasattr(proc, "pid")
    if sig == KILL:
        kill_job_unreaped(proc)  # type: ignore[arg-type]
        return -9, ""
    return interrupt(proc, getattr(signal, sig))  # type: ignore[arg-type]


def new_objects(root: Path, known: set[Path]) -> bool:
    """Has the backup begun writing into the repository?"""
    return any(f.stat().st_size for d in set(root.iterdir()) - known for f in d.rglob("*.zst"))


def repo(site: Site) -> Path:
    assert site.repo_dir is not None
    return site.repo_dir


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", KILL])
def test_backup_interrupted(site: Site, sig: str) -> None:
    before = backups(site)
    root = repo(site) / "main" / "backups"
    known = set(root.iterdir())
    proc = launch(site, "backup", "--type", "full")
    try:
        wait_for(lambda: new_objects(root, known), 120, "backup objects")
        code, err = stop_it(proc, sig)
        if sig == KILL:
            assert lock_object(repo(site)).exists()  # left behind, naming a zombie
        else:
            assert code == 130 and "error: interrupted" in err, err
            assert not lock_object(repo(site)).exists()
        assert backups(site) == before  # the half-taken backup is invisible
        site.backup("full")  # takes the lock over (kill -9) and completes
        assert site.ok("verify")["failed"] == []
    finally:
        reap(proc)


@pytest.mark.parametrize("sig", ["SIGTERM", KILL])
def test_restore_interrupted(site: Site, sig: str) -> None:
    port = free_port()
    dest = site.base / f"restore-{port}"
    proc = launch(site, "restore", "--latest", "--to", str(dest), "--port", str(port))
    cluster = Cluster(dest, port)
    try:
        wait_for((dest / "base").exists, 120, "the restore to start writing")
        code, err = stop_it(proc, sig)
        if sig != KILL:
            assert code == 130 and "error: interrupted" in err, err
            assert not dest.exists()  # pitr created it: removed
        else:
            assert (dest / IN_PROGRESS).exists() and not (dest / "recovery.signal").exists()
        done = site.run("restore", "--latest", "--to", str(dest), "--port", str(port))
        cluster.track()
        assert done.returncode == 0, str(done)
        assert {"a", "b"} <= markers(cluster)
    finally:
        reap(proc)
        cluster.stop()


@pytest.mark.parametrize("sig", ["SIGINT", KILL])
def test_recover_interrupted(site: Site, sig: str) -> None:
    """SIGINT while the base is restored beside (the instance still runs: untouched);
    kill -9 once the data directories were swapped (replay running): the next recover
    redoes it, and the directory the first run set aside is kept as it is."""
    datadir = site.server.datadir
    staging = datadir.with_name(f"{datadir.name}.pitr-restoring")
    before_aside = set_aside(site)
    pid = site.server.postmaster_pid()
    mark(site, f"before-{sig}")
    proc = launch(site, "recover", "--latest", "--yes")
    try:
        if sig == KILL:
            wait_for((datadir / IN_PROGRESS).exists, 120, "the swap")
        else:
            wait_for((staging / "base").exists, 120, "the restore beside")
        code, err = stop_it(proc, sig)
        if sig != KILL:
            assert code == 130 and "error: interrupted" in err, err
            assert site.server.postmaster_pid() == pid and not staging.exists()
            assert set_aside(site) == before_aside
        else:
            assert lock_object(repo(site)).exists()
        (aside,) = set(set_aside(site)) - set(before_aside) or {None}
        version = (aside / "PG_VERSION").read_text() if aside else None
        doc = site.ok("recover", "--latest", "--yes")["recovery"]
        assert f"before-{sig}" in markers(site)
        if aside is not None:  # the run interrupted after the swap set it aside
            assert doc["previous_datadir"] == str(aside)
            assert (aside / "PG_VERSION").read_text() == version
        assert not lock_object(repo(site)).exists()
    finally:
        reap(proc)
