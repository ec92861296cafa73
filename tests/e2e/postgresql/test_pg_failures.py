"""What goes wrong around the swap of an in-place recovery, and how pitr says it.

- PostgreSQL's programs cannot be found (``bindir`` wrong, nothing on PATH): ``restore`` and
  ``recover`` refuse before anything is written (exit 6, naming the programs and where they
  were looked for) — on a running instance and on a stopped one.
- The recovered server cannot start once the data directory has been swapped (another
  program took the instance's port while it was down): exit 7, naming the directory set
  aside, which is intact; once the port is free, the same ``recover`` completes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from pg_e2e import (
    BINDIR,
    Point,
    Site,
    assert_at_point,
    before_target,
    controldata,
    damage,
    mark,
    markers,
    seed,
    set_aside,
    tree_digest,
)
from servers.common import free_port

#: A PATH without /usr/local/bin, where this machine links pg_ctl and postgres.
BARE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def story(site: Site) -> Point:
    """A full backup, the target, the damage, all archived."""
    seed(site, ("victim",))
    site.backup("full")
    point = before_target(site, "f", "victim")
    damage(site, point)
    mark(site, "end")
    site.archive_now()
    return point


@contextlib.contextmanager
def programs_missing(site: Site) -> Iterator[tuple[str, Path]]:
    """A configuration whose ``bindir`` is an empty directory, run with a PATH holding no
    PostgreSQL program; yields the configuration and that directory."""
    empty = site.base / "empty-bin"
    empty.mkdir()
    config = site.base / "pitr-no-bin.toml"
    text = site.config.read_text()
    assert f'bindir = "{BINDIR}"' in text
    config.write_text(text.replace(f'bindir = "{BINDIR}"', f'bindir = "{empty}"'))
    config.chmod(0o644)
    for name in ("pg_ctl", "postgres"):
        assert shutil.which(name, path=BARE_PATH) is None
    kept = dict(site.env)
    site.env["PATH"] = BARE_PATH
    try:
        yield str(config), empty
    finally:
        site.env = kept


def beside(site: Site) -> list[str]:
    """The data directory and whatever pitr put beside it."""
    datadir = site.server.datadir
    return sorted(p.name for p in datadir.parent.iterdir() if p.name.startswith(datadir.name))


def test_programs_missing_nothing_is_written(site: Site) -> None:
    point = story(site)
    target = point.option("xid")
    datadir = site.server.datadir
    with programs_missing(site) as (config, empty):
        # restore --port: postgres (to read its settings) and pg_ctl (to start the copy).
        dest = site.base / "never-restored"
        done = site.fails(
            6, "restore", *target, "--to", str(dest), "--port", str(free_port()), config=config
        )
        assert f"postgres, pg_ctl not found: looked in bindir {empty} (configured)" in done.error
        assert "on PATH; nothing was changed" in done.error
        assert "HINT: set bindir in [instances.main]" in done.stderr
        assert not dest.exists()

        # recover, the instance running: not stopped, nothing restored beside it.
        pid = site.server.postmaster_pid()
        segment = "SELECT pg_walfile_name(pg_current_wal_lsn())"
        wal = site.one(segment)
        done = site.fails(6, "recover", *target, "--yes", config=config)
        assert f"pg_ctl not found: looked in bindir {empty} (configured)" in done.error
        assert site.server.postmaster_pid() == pid
        assert site.one(segment) == wal  # not even a WAL switch
        assert "end" in markers(site)
        assert beside(site) == [datadir.name]

        # recover, the instance stopped: its data directory is not swapped.
        site.server.stop()
        before = tree_digest(datadir)
        done = site.fails(6, "recover", *target, "--yes", config=config)
        assert "pg_ctl not found" in done.error
        assert tree_digest(datadir) == before
        assert beside(site) == [datadir.name]
        assert not site.server.is_running()
    site.server.start()
    assert "end" in markers(site)


@contextlib.contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Something else listens on 127.0.0.1:``port`` (the instance's address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Past the server's connections in TIME_WAIT; a listener still excludes PostgreSQL.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def test_server_cannot_start_after_the_swap(site: Site) -> None:
    point = story(site)
    target = point.option("xid")
    datadir = site.server.datadir
    site.server.stop()  # down for maintenance: its WAL is archived already
    with port_taken(site.server.port):
        done = site.fails(7, "recover", *target, "--yes")
    (aside,) = set_aside(site)
    assert f"the previous data directory is kept at {aside}" in done.error
    assert "recovery failed:" in done.error
    assert "could not" in done.error  # PostgreSQL's own complaint (bind, TCP/IP sockets)
    assert f"run the same recover again ({aside} is never touched)" in done.stderr
    # The instance's directory, as it was stopped, complete; pitr's half-done one in place.
    assert controldata(aside)["Database cluster state"] == "shut down"
    assert (aside / "PG_VERSION").is_file()
    assert (datadir / "pitr-restore-in-progress").is_file()
    untouched = tree_digest(aside)

    doc = site.ok("recover", *target, "--yes")["recovery"]
    assert doc["previous_datadir"] == str(aside)
    assert_at_point(site, point)
    assert "end" not in markers(site)
    assert set_aside(site) == [aside]
    assert tree_digest(aside) == untouched
    assert beside(site) == sorted([datadir.name, aside.name])
