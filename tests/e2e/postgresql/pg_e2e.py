"""Helpers for the PostgreSQL end-to-end tests: a real cluster archiving into a repository with
``pitr wal-push``, the ``pitr`` command line as a subprocess, restored clusters, and the
"test that matters" (DESIGN.md): marker rows A and B, the target, C, the damage.

Everything pitr does here it does as a DBA would run it: the CLI installed beside
``sys.executable`` (the ``postgres`` OS user runs it as ``archive_command``), a ``pitr.toml``
and a repository both OS users can use, JSON on stdout, exit codes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from clirun import CLI_TIMEOUT, INSTANCE, PITR, Done, wait_for
from servers import PostgresServer
from servers.common import (
    free_port,
    group_alive,
    kill_group,
    make_base_dir,
    pid_alive,
    remove_dir,
    track_group,
    untrack_group,
)
from servers.postgres import DEFAULT_MAJOR, bindir_for

BINDIR = bindir_for(DEFAULT_MAJOR)  # the complete suite's version; the stories run on every one
#: pitr runs here as root while the archive_command runs it as postgres, both writing into one
#: file repository: what root creates there must stay writable for postgres.
SHARED_UMASK = 0o000


def public_dir(prefix: str = "pitr-e2e-") -> Path:
    """A fresh mode-0777 directory under /tmp (removed at session end, see servers.common)."""
    path = make_base_dir(prefix)
    path.chmod(0o777)
    return path


def cli_env(extra: Mapping[str, str] | None, home: Path) -> dict[str, str]:
    """This process's environment without PITR_* / AWS_* / Swift settings, plus ``extra``."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_", "ST_", "OS_"))
    }
    return {**base, "HOME": str(home), **(extra or {})}


def checksum_sql(table: str) -> str:
    """The md5 of a table's rows, in a fixed order: equal means the same contents."""
    return f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"


class Cluster:
    """A cluster pitr restored (or any data directory we did not get from the harness):
    SQL over TCP, and a stop that waits for the postmaster to be gone."""

    def __init__(self, datadir: Path, port: int, bindir: Path = BINDIR) -> None:
        self.datadir = datadir
        self.port = port
        self.bindir = bindir

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params or None)
            return cur.fetchall() if cur.description is not None else []

    def one(self, query: str, *params: object) -> Any:
        return self.sql(query, *params)[0][0]

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and pid_alive(pid)

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (as postgres), then make sure the process group is gone."""
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid):
            return
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D",
             str(self.datadir), "stop", "-m", "fast", "-w", "-t", "60"],
            capture_output=True, check=False, timeout=90, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_group(pid)
        untrack_group(pid)

    def track(self) -> None:
        """Have the harness kill this postmaster at session end should a test leave it."""
        pid = self.postmaster_pid()
        if pid is not None:
            track_group(pid)


@dataclass(frozen=True)
class Point:
    """What the test noted around a target: the rows and the values to recover to."""

    tag: str
    victim: str
    xid: int  # B's transaction
    lsn: str  # just after B
    time: datetime  # between B and C
    restore_point: str  # created after B, before C
    checksum: str  # the victim table's contents at the target

    def option(self, kind: str) -> list[str]:
        """The target options of ``kind`` for this point."""
        return {
            "at": ["--at", self.time.isoformat()],
            "xid": ["--xid", str(self.xid)],
            "lsn": ["--lsn", self.lsn],
            "restore-point": ["--restore-point", self.restore_point],
        }[kind]


@dataclass
class Site:
    """One PostgreSQL cluster archiving into one repository, with its pitr.toml."""

    server: PostgresServer
    base: Path
    config: Path
    env: dict[str, str]
    repo_dir: Path | None
    restored: list[Cluster] = field(default_factory=list)

    # -- the command line --------------------------------------------------------------

    def run(
        self,
        *args: str,
        timeout: float = CLI_TIMEOUT,
        config: str | None = None,
        cwd: Path | None = None,
    ) -> Done:
        """``pitr --config CONFIG ARGS`` as root, stdin not a TTY."""
        argv = [str(PITR), "--config", config or str(self.config), *args]
        done = subprocess.run(
            argv,
            cwd=cwd or self.base,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            umask=SHARED_UMASK,
        )
        return Done(tuple(args), done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(PITR), "--config", str(self.config), *args],
            cwd=self.base,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            umask=SHARED_UMASK,
        )

    def ok(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        """Run with ``--json``; it must exit 0 and print one JSON document."""
        done = self.run(*args, "--json", **kwargs)
        assert done.returncode == 0, str(done)
        return done.json()

    def fails(self, code: int, *args: str, **kwargs: Any) -> Done:
        """Run; it must exit ``code`` with a one-line error (and maybe a HINT line)."""
        done = self.run(*args, **kwargs)
        assert done.returncode == code, str(done)
        assert "Traceback" not in done.stderr, str(done)
        done.error  # noqa: B018 (asserts the shape)
        return done

    # -- the cluster -------------------------------------------------------------------

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        return self.server.sql(query, *params)

    def one(self, query: str, *params: object) -> Any:
        return self.sql(query, *params)[0][0]

    def checksum(self, table: str) -> str:
        return str(self.one(checksum_sql(table)))

    def archive_now(self, timeout: float = 60) -> str:
        """Switch WAL and wait until pitr has archived the segment just finished."""
        name = str(self.one("SELECT pg_walfile_name(pg_switch_wal() - 1)"))  # 17: see recovery.py
        self.wait_archived(name, timeout)
        return name

    def wait_archived(self, name: str, timeout: float = 60) -> None:
        def archived() -> bool:
            last, failed = self.sql(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            )[0]
            assert failed is None, f"archive_command failed for {failed}: {self.server.log_tail()}"
            return last is not None and str(last) >= name

        wait_for(archived, timeout, f"{name} to be archived")

    def backup(self, kind: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.ok("backup", "--type", kind)["backup"]
        assert doc["type"] == kind
        assert doc["start_time"] <= doc["end_time"]  # times; start and end are LSNs
        return doc

    # -- restoring beside ----------------------------------------------------------------

    @contextlib.contextmanager
    def restore(self, *target: str, **kwargs: Any) -> Iterator[tuple[dict[str, Any], Cluster]]:
        """``pitr restore TARGET --to DIR --port P --json``; the restored cluster is stopped and
        its directory removed afterwards."""
        dest = self.base / f"restored-{free_port()}"
        cluster = Cluster(dest, free_port(), self.server.bindir)
        try:
            done = self.run(
                "restore", *target, "--to", str(dest), "--port", str(cluster.port), "--json",
                **kwargs,
            )  # fmt: skip
            cluster.track()
            assert done.returncode == 0, str(done) + _server_log(dest)
            doc = done.json()["recovery"]
            assert doc["status"] == "ACTIVE"
            assert doc["port"] == cluster.port
            assert cluster.one("SELECT pg_is_in_recovery()") is False
            yield doc, cluster
        finally:
            cluster.stop()
            shutil.rmtree(dest, ignore_errors=True)


def _server_log(datadir: Path) -> str:
    try:
        return "\n--- pitr-server.log ---\n" + (datadir / "pitr-server.log").read_text()[-4000:]
    except OSError:
        return ""


def make_site(
    base: Path,
    repository: str,
    *,
    env: Mapping[str, str] | None = None,
    gucs: Mapping[str, object] | None = None,
    file_repo: Path | None = None,
    wal_push: str = "wal-push",
    archive_prefix: str = "",
    major: int = DEFAULT_MAJOR,
    prepare: Callable[[PostgresServer], None] | None = None,
) -> Site:
    """A new cluster whose archive_command is ``pitr wal-push`` into ``repository`` (the body
    of the ``[repository]`` table), after ``archive_prefix`` (shell), started. ``prepare``
    runs before the cluster is created (e.g. to mount a file system for it)."""
    config = base / "pitr.toml"
    extra = dict(env or {})
    server = PostgresServer(archive_command="/bin/true", gucs=gucs, env=extra, major=major)
    config.write_text(
        f'spool_dir = "{base / "spool"}"\n\n'  # each site its own --async worker
        f"[repository]\n{repository}\n\n"
        f"[instances.{INSTANCE}]\n"
        f'engine = "postgresql"\n'
        f'datadir = "{server.datadir}"\n'
        f'host = "127.0.0.1"\n'
        f"port = {server.port}\n"
        f'user = "postgres"\n'
        f'bindir = "{server.bindir}"\n'
    )
    config.chmod(0o644)
    server.archive_command = f"{archive_prefix}{PITR} --config {config} {wal_push} %p"
    if prepare is not None:
        prepare(server)
    server.init()
    server.start()
    site = Site(server, base, config, cli_env(extra, base), file_repo)
    return site


def file_site(base: Path, **kwargs: Any) -> Site:
    repo = base / "repo"
    repo.mkdir(mode=0o777)
    repo.chmod(0o777)
    return make_site(base, f'url = "file://{repo}"', file_repo=repo, **kwargs)


@contextlib.contextmanager
def fresh_file_site(major: int = DEFAULT_MAJOR) -> Iterator[Site]:
    """A site with a file repository in a fresh public directory, destroyed afterwards."""
    site = file_site(public_dir(), major=major)
    try:
        yield site
    finally:
        destroy_site(site)


def destroy_site(site: Site) -> None:
    try:
        site.server.destroy()
    finally:
        remove_dir(site.base)


# -- the story --------------------------------------------------------------------------


def seed(site: Site, victims: tuple[str, ...], rows: int = 2000) -> None:
    """``markers`` (the A/B/C rows), ``keep`` (never damaged) and the victim tables."""
    site.sql(
        "CREATE TABLE markers (name text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
    )
    site.sql(
        "CREATE TABLE keep AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, %s) g",
        rows,
    )
    for victim in victims:
        site.sql(
            f"CREATE TABLE {victim} AS SELECT g AS id, md5(g::text || %s) AS v, now() AS t "
            "FROM generate_series(1, %s) g",
            victim,
            rows,
        )
        site.sql(f"ALTER TABLE {victim} ADD PRIMARY KEY (id)")


def move_to_tablespace(site: Site, table: str, name: str = "ts") -> Path:
    """Create tablespace ``name`` in a directory of its own (outside the data directory) and
    move ``table`` there; returns the directory."""
    location = site.server.make_dir(name, 0o700)
    site.sql(f"CREATE TABLESPACE {name} LOCATION '{location}'")
    site.sql(f"ALTER TABLE {table} SET TABLESPACE {name}")
    return location


def mark(site: Site, name: str) -> None:
    site.sql("INSERT INTO markers (name) VALUES (%s)", name)


def before_target(site: Site, tag: str, victim: str) -> Point:
    """A and B (B in a transaction whose xid is noted), then the targets just after B."""
    mark(site, f"{tag}-A")
    site.sql(f"UPDATE {victim} SET v = md5(v) WHERE id % 7 = 0")  # the victim changes too
    with site.server.connect() as conn, conn.transaction():
        xid = int(conn.execute("SELECT txid_current()").fetchall()[0][0])
        conn.execute("INSERT INTO markers (name) VALUES (%s)", (f"{tag}-B",))
    lsn = str(site.one("SELECT pg_current_wal_lsn()::text"))
    restore_point = f"{tag}-rp"
    site.sql("SELECT pg_create_restore_point(%s)", restore_point)
    moment = site.one("SELECT clock_timestamp()")
    return Point(tag, victim, xid, lsn, moment, restore_point, site.checksum(victim))


def damage(site: Site, point: Point) -> None:
    """C, then the damage: the victim table is dropped."""
    wait_for(lambda: site.one("SELECT clock_timestamp()") > point.time, 5, "the clock to move")
    mark(site, f"{point.tag}-C")
    site.sql(f"DROP TABLE {point.victim}")


def markers(cluster: Cluster | Site) -> set[str]:
    return {str(r[0]) for r in cluster.sql("SELECT name FROM markers")}


def table_exists(cluster: Cluster | Site, table: str) -> bool:
    return cluster.sql("SELECT to_regclass(%s)::text", table)[0][0] is not None


def assert_at_point(cluster: Cluster | Site, point: Point) -> None:
    """A and B present, C absent, the victim back with the contents it had at the target."""
    found = {m for m in markers(cluster) if m.startswith(f"{point.tag}-")}
    assert found == {f"{point.tag}-A", f"{point.tag}-B"}
    assert table_exists(cluster, point.victim)
    assert cluster.sql(checksum_sql(point.victim))[0][0] == point.checksum


def drop_xid(site: Site, victim: str) -> int:
    """The DROP's xid, found the way the quick start does: ``pitr events --grep DROP``."""
    events = site.ok("events", "--grep", "DROP")["events"]
    matching = [e for e in events if f"public.{victim}" in e["summary"]]
    assert len(matching) == 1, events
    # Its primary key index and TOAST relations read as the table: one name, nothing else.
    assert matching[0]["summary"] == f"DROP TABLE public.{victim}", matching
    return int(matching[0]["xid"])


# -- what recover leaves on disk ---------------------------------------------------------


def tree_digest(root: Path) -> str:
    """Names, modes and contents of every file under ``root``: "untouched" means equal."""
    digest = hashlib.sha256()
    for top, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = Path(top) / name
            digest.update(f"{path.relative_to(root)}:{path.lstat().st_mode:o}\n".encode())
            if path.is_file() and not path.is_symlink():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def controldata(datadir: Path, bindir: Path = BINDIR) -> dict[str, str]:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bindir / "pg_controldata"), "-D", str(datadir)],
        capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"},
    )  # fmt: skip
    return dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in done.stdout.splitlines())
    )


def set_aside(site: Site) -> list[Path]:
    """The directories recover set aside (``<datadir>.pitr-<UTC time>``)."""
    datadir = site.server.datadir
    found = datadir.parent.glob(f"{datadir.name}.pitr-*")
    return sorted(p for p in found if p.name != f"{datadir.name}.pitr-restoring")
