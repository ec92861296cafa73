"""Helpers for the MariaDB end-to-end tests: a real MariaDB (binary log on, its binlogs
outside the data directory) — the host's 10.11, or 11.8 in a Debian root (``servers.roots``,
with pitr installed in the root beside it) — the ``pitr`` command line as a subprocess with a
``pitr.toml``, restored servers, and the "test that matters" (DESIGN.md): marker rows A and B,
the target (GTID, time, position), C, the damage (DROP TABLE).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
from clirun import CLI_TIMEOUT, INSTANCE, PITR, Done, wait_for
from servers import MariaDBServer
from servers.common import (
    free_port,
    make_base_dir,
    pid_alive,
    remove_dir,
    track_group,
    untrack_group,
)
from servers.roots import MARIADB_ROOT, ensure_root, in_root, install_pitr

#: the MariaDB versions the stories run on: the host's, and 11.8 in a Debian root
VERSIONS = ("10.11", "11.8")


def root_of(version: str) -> Path | None:
    """The Debian root a version runs in (built on first use; None: the host)."""
    return ensure_root(MARIADB_ROOT) if version == "11.8" else None


def public_dir(prefix: str = "pitr-my-") -> Path:
    path = make_base_dir(prefix)
    path.chmod(0o755)
    return path


class Sql:
    """SQL over a unix socket as root (a server of the harness, or one pitr started)."""

    socket: str

    def connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True,
                               connect_timeout=5)  # fmt: skip

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def one(self, query: str, *params: object) -> Any:
        return self.sql(query, *params)[0][0]

    def markers(self) -> set[str]:
        return {str(r[0]) for r in self.sql("SELECT name FROM shop.markers")}

    def has_table(self, table: str) -> bool:
        return bool(self.sql("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                             "'shop' AND TABLE_NAME = %s", table))  # fmt: skip

    def checksum(self, table: str) -> int:
        return int(self.sql(f"CHECKSUM TABLE shop.{table}")[0][1])

    def gtid(self) -> str:
        return str(self.one("SELECT @@gtid_binlog_pos"))


class Restored(Sql):
    """A server pitr restored and started (``restore --port``); stopped by the test."""

    def __init__(self, datadir: Path, port: int) -> None:
        self.datadir = datadir
        self.port = port
        self.socket = str(datadir / "mysqld.sock")

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "pitr-server.pid").read_text().split()[0])
        except (OSError, ValueError):
            return None

    def track(self) -> None:
        pid = self.pid()
        if pid is not None:
            track_group(pid)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), 60, "the restored server to exit")
        untrack_group(pid)


class Site(Sql):
    """One MariaDB server (the instance) and one repository, with its pitr.toml; with a
    ``root``, the server and pitr run in that Debian root (paths under /tmp are the same)."""

    server_class: type[MariaDBServer] = MariaDBServer
    engine = "mariadb"

    def __init__(self, base: Path, repository: str, *, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, managed: bool = False,
                 root: Path | None = None) -> None:  # fmt: skip
        self.base = base
        self.root = root
        self.pitr = [str(PITR)] if root is None else in_root(root, [install_pitr(root)])
        self.server = self.server_class(extra_args=extra_args, root=root)
        self.socket = str(self.server.socket)
        self.config = base / "pitr.toml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_"))}
        self.env.update({"HOME": str(base), **(env or {})})
        self.managed = managed  # started by start_command / stopped by stop_command
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f'spool_dir = "{base / "spool"}"', f'lock_dir = "{base / "locks"}"', "",
                 f"[repository]\n{repository}\n", f"[instances.{INSTANCE}]",
                 f'engine = "{self.engine}"', f'datadir = "{self.server.datadir}"',
                 f'socket = "{self.socket}"', 'user = "root"']  # fmt: skip
        if managed:
            start, stop = base / "start.sh", base / "stop.sh"
            argv = " ".join(self.server.server_args())
            start.write_text(f"#!/bin/sh\nsetsid {argv} >>{base}/server.log 2>&1 </dev/null &\n")
            stop.write_text(f"#!/bin/sh\nkill -TERM $(cat {self.server.pid_file})\n")
            for script in (start, stop):
                script.chmod(0o755)
            lines += [f'start_command = "{start}"', f'stop_command = "{stop}"']
        self.config.write_text("\n".join(lines) + "\n")
        self.server.init()
        if managed:
            self.start_managed()
        else:
            self.server.start()

    # -- the managed server (start_command / stop_command) --------------------------------

    def start_managed(self) -> None:
        subprocess.run(self.server.command([str(self.base / "start.sh")]), check=True)
        wait_for(self._up, 60, "the instance to start")
        self.track()

    def _up(self) -> bool:
        try:
            self.connect().close()
            return True
        except pymysql.MySQLError:
            return False

    def server_pid(self) -> int | None:
        try:
            return int(self.server.pid_file.read_text().split()[0])
        except (OSError, ValueError):
            return None

    def track(self) -> None:
        pid = self.server_pid()
        if pid is not None:
            track_group(pid)

    def destroy(self) -> None:
        try:
            if self.managed:
                pid = self.server_pid()
                if pid is not None and pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
                    wait_for(lambda: not pid_alive(pid), 60, "the instance to exit")
                    untrack_group(pid)
            self.server.destroy()
        finally:
            remove_dir(self.base)

    # -- the command line -----------------------------------------------------------------

    def run(self, *args: str, timeout: float = CLI_TIMEOUT,
            env: Mapping[str, str] | None = None) -> Done:  # fmt: skip
        done = subprocess.run(
            [*self.pitr, "--config", str(self.config), *args], cwd=self.base,
            env={**self.env, **(env or {})}, capture_output=True, text=True, check=False,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return Done(tuple(args), done.returncode, done.stdout, done.stderr)

    def follow(self) -> subprocess.Popen[str]:
        """``pitr archive --follow --json`` in the background (the test stops it)."""
        return subprocess.Popen(
            [*self.pitr, "--config", str(self.config), "archive", "--follow", "--json"],
            cwd=self.base, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def ok(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        done = self.run(*args, "--json", **kwargs)
        assert done.returncode == 0, str(done)
        return done.json()

    def fails(self, code: int, *args: str, **kwargs: Any) -> Done:
        done = self.run(*args, **kwargs)
        assert done.returncode == code, str(done)
        lines = [ln for ln in done.stderr.strip().splitlines() if not ln[:4].isdigit()]
        assert lines and lines[0].startswith("error: "), str(done)  # log lines aside
        assert "Traceback" not in done.stderr, str(done)
        return done

    def backup(self, kind: str) -> dict[str, Any]:
        doc = self.ok("backup", "--type", kind)["backup"]
        assert doc["type"] == kind
        return doc

    def archive(self) -> dict[str, Any]:
        return self.ok("archive")

    def flush(self) -> None:
        self.sql("FLUSH BINARY LOGS")

    @contextlib.contextmanager
    def restore(self, *target: str) -> Iterator[tuple[dict[str, Any], Restored]]:
        """``pitr restore TARGET --to DIR --port P --json``; stopped and removed after."""
        port = free_port()
        dest = self.base / f"r{port}"
        restored = Restored(dest, port)
        try:
            done = self.run("restore", *target, "--to", str(dest), "--port", str(port), "--json")
            restored.track()
            assert done.returncode == 0, str(done) + _log(dest)
            doc = done.json()["recovery"]
            assert doc["status"] == "ACTIVE" and doc["port"] == port
            yield doc, restored
        finally:
            restored.stop()
            remove_tree(dest)


def keep_pristine(site: Site, repo: Path) -> None:
    """Copy ``repo`` aside, for tests that damage it to start again from (``pristine``)."""
    shutil.copytree(repo, site.base / "repo.orig")


def pristine(site: Site, repo: Path) -> None:
    """``repo`` as ``keep_pristine`` copied it."""
    shutil.rmtree(repo)
    shutil.copytree(site.base / "repo.orig", repo)


def remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _log(datadir: Path) -> str:
    try:
        return "\n--- pitr-server.log ---\n" + (datadir / "pitr-server.log").read_text()[-3000:]
    except OSError:
        return ""


def file_site(base: Path, **kwargs: Any) -> Site:
    repo = base / "repo"
    repo.mkdir()
    site = Site(base, f'url = "file://{repo}"', **kwargs)
    site.repo_dir = repo  # type: ignore[attr-defined]
    return site


# -- the story --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """What the test noted around a target."""

    tag: str
    victim: str
    gtid: str  # B's GTID
    position: str  # just after B
    time: datetime  # after B, before C (C commits in a later second)
    checksum: int  # the victim's CHECKSUM TABLE at the target

    def option(self, kind: str) -> list[str]:
        return {
            "gtid": ["--gtid", self.gtid],
            "at": ["--at", self.time.isoformat()],
            "position": ["--position", self.position],
        }[kind]


def seed(site: Sql, victims: Sequence[str], rows: int = 500) -> None:
    site.sql("CREATE DATABASE shop")
    site.sql("CREATE TABLE shop.markers (name VARCHAR(40) PRIMARY KEY, "
             "at DATETIME(6) DEFAULT UTC_TIMESTAMP(6))")  # fmt: skip
    site.sql("CREATE TABLE shop.keep (id INT PRIMARY KEY, v VARCHAR(64))")
    site.sql("INSERT INTO shop.keep SELECT seq, MD5(seq) FROM shop.seq_1_to_%s", rows)
    for victim in victims:
        site.sql(f"CREATE TABLE shop.{victim} (id INT PRIMARY KEY, v VARCHAR(64), "
                 "t DATETIME(6))")  # fmt: skip
        site.sql(f"INSERT INTO shop.{victim} SELECT seq, MD5(CONCAT(seq, %s)), "
                 "UTC_TIMESTAMP(6) FROM shop.seq_1_to_%s", victim, rows)  # fmt: skip


def mark(site: Sql, name: str) -> None:
    site.sql("INSERT INTO shop.markers (name) VALUES (%s)", name)


def utc_now(site: Sql) -> datetime:
    return site.one("SELECT UTC_TIMESTAMP(6)").replace(tzinfo=UTC)  # type: ignore[no-any-return]


def before_target(site: Sql, tag: str, victim: str) -> Point:
    """A, a change to the victim, B; then the targets just after B. Whatever follows commits
    in a later second than the time noted (MariaDB stamps binlog events with whole seconds)."""
    mark(site, f"{tag}-A")
    site.sql(f"UPDATE shop.{victim} SET v = MD5(v) WHERE id % 7 = 0")
    mark(site, f"{tag}-B")
    gtid = site.gtid()
    row = site.sql("SHOW MASTER STATUS")[0]
    moment = utc_now(site)
    checksum = site.checksum(victim)
    later = moment.replace(microsecond=0) + timedelta(seconds=1)
    wait_for(lambda: utc_now(site) >= later, 5, "the next second")
    return Point(tag, victim, gtid, f"{row[0]}:{row[1]}", moment, checksum)


def damage(site: Sql, point: Point) -> None:
    mark(site, f"{point.tag}-C")
    site.sql(f"DROP TABLE shop.{point.victim}")


def assert_at_point(restored: Sql, point: Point, *, with_c: bool = False) -> None:
    found = {m for m in restored.markers() if m.startswith(f"{point.tag}-")}
    want = {f"{point.tag}-A", f"{point.tag}-B"} | ({f"{point.tag}-C"} if with_c else set())
    assert found == want
    assert restored.has_table(point.victim)
    assert restored.checksum(point.victim) == point.checksum


def drop_event(site: Site, victim: str) -> dict[str, Any]:
    """The DROP, found the way a DBA does: ``pitr events --grep DROP``."""
    events = site.ok("events", "--grep", "DROP TABLE")["events"]
    matching = [e for e in events if f"`shop`.`{victim}`" in e["summary"]]
    assert len(matching) == 1, events
    assert matching[0]["summary"] == f"DROP TABLE `shop`.`{victim}`"
    return matching[0]
