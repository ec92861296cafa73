"""What pitr must refuse, and how: a gap in the archived WAL (exit 4), a corrupt backup
object (exit 8), targets outside the window (exit 4), a non-empty ``--to`` (exit 6), a
``recover`` nobody confirmed (exit 2), a target of another engine (exit 2) — each time before
anything is changed, and naming what is wrong.

One cluster for the module; each test that damages the repository puts it back afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pg_e2e import (
    INSTANCE,
    Cluster,
    Done,
    Site,
    destroy_site,
    file_site,
    make_site,
    mark,
    markers,
    public_dir,
    seed,
    wait_for,
)
from servers.common import free_port

from pitr.catalog.layout import Layout


@dataclass(frozen=True)
class Story:
    site: Site
    before_backup: datetime
    full_id: str
    middle: list[str]  # WAL segments archived one by one after the backup
    target: datetime  # needs every one of them
    last: str  # the last archived segment
    window: dict[str, str]


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    site = file_site(public_dir())
    try:
        seed(site, ("victim",))
        before = site.one("SELECT clock_timestamp()")
        wait_for(lambda: site.one("SELECT clock_timestamp()") > before, 5, "the clock")
        full = site.backup("full")
        middle = []
        for n in range(3):
            mark(site, f"s{n}")
            middle.append(site.archive_now())
        target = site.one("SELECT clock_timestamp()")
        mark(site, "after")
        last = site.archive_now()
        window = site.ok("list")["window"]
        yield Story(site, before, full["id"], middle, target, last, window)
    finally:
        destroy_site(site)


@contextlib.contextmanager
def moved_away(path: Path) -> Iterator[None]:
    """``path`` is gone for the duration (put back afterwards, byte for byte)."""
    keep = path.with_name(path.name + ".test-kept")
    path.rename(keep)
    try:
        yield
    finally:
        keep.rename(path)


@contextlib.contextmanager
def corrupted(path: Path, where: str) -> Iterator[None]:
    """A few bytes of ``path`` flipped (same size) in the middle, or at the very end (where a
    zstd frame keeps its content checksum), restored afterwards."""
    original = path.read_bytes()
    start = len(original) // 2 if where == "middle" else len(original) - 4
    damaged = bytearray(original)
    for i in range(start, start + 4):
        damaged[i] ^= 0xFF
    path.write_bytes(bytes(damaged))
    try:
        yield
    finally:
        path.write_bytes(original)


def refused_recover(site: Site, code: int, *args: str) -> Done:
    """``pitr recover ARGS`` must exit ``code`` having changed nothing: same postmaster, same
    data, nothing set aside or restored beside the data directory."""
    datadir = site.server.datadir
    pid = site.server.postmaster_pid()
    before = markers(site)
    done = site.fails(code, "recover", *args)
    assert site.server.postmaster_pid() == pid
    assert site.server.is_running()
    assert markers(site) == before
    beside = sorted(p.name for p in datadir.parent.iterdir() if p.name.startswith(datadir.name))
    assert beside == [datadir.name]
    assert not (datadir / "pitr-restore-in-progress").exists()
    return done


def segment_key(story: Story, name: str, suffix: str) -> Path:
    assert story.site.repo_dir is not None
    return story.site.repo_dir / Layout(INSTANCE).log_object(name[:8], name, suffix)


@pytest.mark.parametrize("what", ["data object", "index document"])
def test_missing_wal_segment(story: Story, what: str) -> None:
    site, gap = story.site, story.middle[1]
    target = ("--at", story.target.isoformat())
    assert site.ok("plan", *target)["plan"]["recoverable"] is True
    path = segment_key(story, gap, ".zst" if what == "data object" else ".json")
    with moved_away(path):
        done = site.fails(4, "plan", *target)
        assert f"missing WAL segment {gap}" in done.error
        doc = site.run("plan", *target, "--json")
        assert doc.returncode == 4
        plan = doc.json()["plan"]
        assert plan["recoverable"] is False
        assert any(gap in problem for problem in plan["problems"])
        done = refused_recover(site, 4, *target, "--yes")
        assert gap in done.stderr
        dest = site.base / "never-restored"
        done = site.fails(4, "restore", *target, "--to", str(dest), "--port", str(free_port()))
        assert gap in done.stderr
        assert not dest.exists()


@pytest.mark.parametrize("where", ["middle", "end"])
def test_corrupt_backup_object(story: Story, where: str) -> None:
    site = story.site
    assert site.repo_dir is not None
    objects = sorted((site.repo_dir / INSTANCE / "backups" / story.full_id).glob("data-*"))
    assert objects
    victim = objects[0]
    key = str(victim.relative_to(site.repo_dir))
    with corrupted(victim, where):
        done = site.run("verify", "--json")
        assert done.returncode == 8, str(done)
        assert [f["key"] for f in done.json()["failed"]] == [key]
        assert key in site.fails(8, "verify").error
        assert key in site.fails(8, "verify", "--backup", story.full_id).stderr

        target = ("--at", story.target.isoformat())
        created = site.base / "corrupt-new"
        done = site.fails(8, "restore", *target, "--to", str(created), "--port", str(free_port()))
        assert key in done.stderr
        assert not created.exists()
        empty = site.base / "corrupt-empty"
        empty.mkdir()
        site.fails(8, "restore", *target, "--to", str(empty))
        assert list(empty.iterdir()) == []
        empty.rmdir()
    assert site.ok("verify")["failed"] == []


@pytest.mark.parametrize(("target", "which"), [("--at", "middle"), ("--latest", "last")])
def test_corrupt_wal_segment(story: Story, target: str, which: str) -> None:
    """Same size, so the plan cannot tell: replay must fail on it (exit 8, naming it) and
    leave no server running — also with ``--latest``, where PostgreSQL, having no target,
    promotes after the last segment it could read as if that were the end of the WAL."""
    site = story.site
    bad = story.middle[1] if which == "middle" else story.last
    path = segment_key(story, bad, ".zst")
    key = str(path.relative_to(site.repo_dir or path))
    args = ["--at", story.target.isoformat()] if target == "--at" else ["--latest"]
    with corrupted(path, "middle"):
        assert key in site.fails(8, "verify").error
        dest = site.base / "corrupt-wal"
        cluster = Cluster(dest, free_port())
        try:
            done = site.fails(8, "restore", *args, "--to", str(dest), "--port", str(cluster.port))
            assert key in done.error
            assert not cluster.is_running()
        finally:
            cluster.stop()
            shutil.rmtree(dest, ignore_errors=True)


def test_corrupt_uncompressed_backup_object() -> None:
    """Without compression nothing but the recorded checksum notices: the tar stream is read
    as it comes, so the object's own verification must be what restore reports (exit 8)."""
    base = public_dir()
    repo = base / "repo"
    repo.mkdir(mode=0o777)
    repo.chmod(0o777)
    site = make_site(base, f'url = "file://{repo}"\ncompression = "none"', file_repo=repo)
    try:
        seed(site, ("victim",))
        full = site.backup("full")
        target = site.one("SELECT clock_timestamp()")
        mark(site, "after")
        site.archive_now()
        (victim, *_rest) = sorted((repo / INSTANCE / "backups" / full["id"]).glob("data-*"))
        assert victim.suffix == ".tar"
        key = str(victim.relative_to(repo))
        with corrupted(victim, "middle"):
            assert key in site.fails(8, "verify").error
            dest = base / "restored"
            done = site.fails(8, "restore", "--at", target.isoformat(), "--to", str(dest))
            assert key in done.error
            assert not dest.exists()
    finally:
        destroy_site(site)


def test_backup_with_archive_command_failing() -> None:
    """The repository is not writable for the postgres OS user, so archive_command fails:
    the backup must say so within seconds (pg_backup_stop(true) would wait for ever) and
    publish nothing."""
    base = public_dir()
    repo = base / "repo"
    logs = repo / INSTANCE / "logs"
    logs.mkdir(mode=0o755, parents=True)  # root's: postgres's ``pitr wal-push`` cannot write
    logs.chmod(0o755)
    site = make_site(base, f'url = "file://{repo}"', file_repo=repo)
    try:
        seed(site, ("victim",))
        started = time.monotonic()
        done = site.fails(6, "backup", "--type", "full", timeout=100)
        assert time.monotonic() - started < 60
        assert "archive_command fails" in done.error
        assert site.ok("list")["backups"] == []
        # ``check`` makes the same round trip, and says the same.
        done = site.run("check", "--json", timeout=100)
        assert done.returncode == 6, str(done)
        report = done.json()
        assert report["ok"] is False
        assert "archive_command fails" in done.error
        assert time.monotonic() - started < 90
    finally:
        destroy_site(site)


def test_target_before_the_first_backup(story: Story) -> None:
    site = story.site
    target = ("--at", story.before_backup.isoformat())
    done = site.fails(4, "plan", *target)
    assert f"recoverable window: {story.window['earliest']}" in done.stderr
    refused_recover(site, 4, *target, "--yes")


def test_target_after_the_last_archived_wal(story: Story) -> None:
    site = story.site
    now = datetime.now(UTC)
    done = site.fails(4, "plan", "--at", now.isoformat())
    assert "after the last archived commit" in done.stderr
    assert f"recoverable window: {story.window['earliest']}" in done.stderr
    done = site.fails(4, "plan", "--lsn", "FF/0")
    assert "recoverable window" in done.stderr
    done = site.fails(4, "plan", "--xid", "4000000000")
    assert "recoverable window" in done.stderr
    future = (now + timedelta(hours=1)).isoformat()
    site.fails(2, "plan", "--at", future)


def test_restore_into_a_non_empty_directory(story: Story) -> None:
    site = story.site
    dest = site.base / "occupied"
    dest.mkdir()
    (dest / "precious.txt").write_text("mine")
    try:
        done = site.fails(
            6, "restore", "--at", story.target.isoformat(), "--to", str(dest), "--port",
            str(free_port()),
        )  # fmt: skip
        assert str(dest) in done.stderr
        assert [p.name for p in dest.iterdir()] == ["precious.txt"]
        assert (dest / "precious.txt").read_text() == "mine"
    finally:
        shutil.rmtree(dest)


def test_recover_without_yes_and_no_tty(story: Story) -> None:
    done = refused_recover(story.site, 2, "--at", story.target.isoformat())
    assert "--yes" in done.stderr


@pytest.mark.parametrize("command", ["plan", "recover", "restore"])
def test_gtid_is_not_a_postgresql_target(story: Story, command: str) -> None:
    extra = {"plan": [], "recover": ["--yes"], "restore": ["--to", str(story.site.base / "gtid")]}
    done = story.site.fails(2, command, "--gtid", "0-1-42", *extra[command])
    assert "--gtid" in done.stderr
    assert not (story.site.base / "gtid").exists()


def test_restore_port_checked_before_anything_is_written(story: Story) -> None:
    """Out of range: exit 2; below 1024 for the postgres OS user, or in use: exit 6. Each
    before a byte is restored (the directory is not even created)."""
    site = story.site
    dest = site.base / "ported"
    target = ("--at", story.target.isoformat(), "--to", str(dest), "--port")
    for port, code, says in (
        ("99999", 2, "not a TCP port"),
        ("0", 2, "not a TCP port"),
        ("1", 6, "cannot listen on a port below"),
        (str(site.server.port), 6, "is in use on this host"),
    ):
        started = time.monotonic()
        done = site.fails(code, "restore", *target, port)
        assert says in done.error and f"--port {port}" in done.error, str(done)
        assert time.monotonic() - started < 30 and not dest.exists()
