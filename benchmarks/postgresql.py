"""pitr vs pgBackRest on one throwaway PostgreSQL 15 cluster, same data, in one run.

    /work/main/.venv/bin/python benchmarks/postgresql.py [--scale 100] [--workdir DIR]
    /work/main/.venv/bin/python benchmarks/postgresql.py --archive-only --scale 20 --segments 40

Run as root (PostgreSQL, pitr and pgBackRest all run as the ``postgres`` OS user, started
with ``subprocess``'s ``user=`` rather than ``runuser`` so that no wrapper is timed) or as
``postgres`` itself. One cluster on a free port under ``--workdir`` (never 5432), archiving
every WAL segment into both repositories (``pitr wal-push %p && pgbackrest archive-push %p``);
both tools compress with zstd level 3 and use 2 processes. Measured:

1. full backup: wall time and CPU time (user + system of the command and of the processes it
   waited for; medians of ``--full-runs``, order alternating, each after a CHECKPOINT and a
   sync so that neither pays for the other's dirty data) and the size of one full backup on
   disk (allocated blocks, as ``du``); the same for ``--diff-runs`` differentials;
2. archive_command cost per WAL segment: the same ``--segments`` segments (copied aside from
   ``pg_wal`` after the load) pushed one call at a time into a fresh repository per tool,
   order alternating; plus the start-up of each program (``pitr --version``,
   ``pgbackrest version``); and asynchronous archiving (``wal-push --async``, pgBackRest's
   ``archive-async=y``): the same segments marked ready at once, archive_command called for
   each in turn as PostgreSQL's archiver does, total wall time;
3. differential backups after ``--warmup`` s of ``pgbench -c 2``, then ``--load`` s (60) of
   ``pgbench -c 2``; the target time is taken just after it (a marker commit follows, so
   replay has a commit past the target to stop at) and each tool restores into a fresh
   directory, replays to the target and promotes: wall time from the command start until the
   server is out of recovery (pitr: ``restore --at T --to DIR --port P``, which returns once
   promoted; pgBackRest: ``restore --type=time`` then ``pg_ctl start`` and, every 20 ms,
   postmaster.pid until it accepts connections, then ``pg_is_in_recovery()`` on one
   connection). The phases are reported too: base restore (until the server starts), replay
   and promotion, and (pitr) its checks after promotion. Both copies must agree with the
   original as of the
   target (``sum(abalance)``, ``count(*)`` of ``pgbench_history``); median of
   ``--restore-runs``, order alternating.

With ``--age`` the second contender is pitr itself with ``encryption = "age"`` (a second
repository; the archive_command pushes every segment into both) instead of pgBackRest, and
the archive_command measurements are left out (``benchmarks/encryption.py`` has them): what
client-side encryption costs a full backup and a restore (goal, issue 13: at most +10%).

pitr runs from this virtualenv; its bytecode is cached under the work directory
(``PYTHONPYCACHEPREFIX``) as an installed package would have it compiled. Goal (issue 4):
pitr ≤ 1.0x pgBackRest on each. The load average is printed before every
measurement; with ``--max-load`` the script first waits (up to ``--load-wait`` s) for the
machine to calm down. Everything is stopped and removed at the end, also on Ctrl-C
(``--keep`` keeps the work directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PITR = Path(sys.executable).with_name("pitr")
PGBACKREST = Path(shutil.which("pgbackrest") or "/usr/bin/pgbackrest")
OS_USER = "postgres"
STANZA = "bench"
INSTANCE = "bench"
MARKER = ".pitr-pg-bench"
MB = 1024 * 1024
POLL = 0.02  # s between looks at a restored server's postmaster.pid


# -- small helpers ---------------------------------------------------------------------------


def shell_form(spool: Path, pitr: str) -> str:
    """The documented shell form of ``pitr wal-push --async`` (docs/postgresql.md): answered
    from the worker's status file without Python, waiting for it in the shell while a worker
    runs."""
    return (
        f"d={spool}; rm $d/%f.ok 2>/dev/null && exit 0; "
        "[ -e $d/worker.lock ] && ! flock -ns $d/worker.lock true && "
        "for i in $(seq 400); do rm $d/%f.ok 2>/dev/null && exit 0; sleep 0.005; done; "
        f"exec {pitr} %p"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (``du``), files only."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def pm_status(datadir: Path) -> str | None:
    """The postmaster's state from its ``postmaster.pid``: "starting", then "ready" once it
    accepts connections (also in hot standby, so it cannot tell promotion); None when there
    is no postmaster. Reading the file costs the server nothing, unlike connecting."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    return lines[7].strip() if len(lines) > 7 else "starting"


def watch_recovery(
    datadir: Path,
    port: int,
    stop: threading.Event,
    times: dict[str, float],
    start_timeout: float | None = None,
) -> None:
    """Note in ``times`` when the server at ``datadir`` starts ("started": its postmaster.pid
    appears) and when it is out of recovery ("promoted"), every ``POLL`` s: postmaster.pid
    until it accepts connections, then ``pg_is_in_recovery()`` on one open connection."""
    conn: psycopg.Connection[Any] | None = None
    first = time.perf_counter()
    try:
        while not stop.is_set():
            status = pm_status(datadir)
            now = time.perf_counter()
            if status is not None:
                times.setdefault("started", now)
            elif "started" in times or (start_timeout and now - first > start_timeout):
                return  # it stopped, or never started
            if status == "ready":
                try:
                    if conn is None:
                        dsn = f"host=127.0.0.1 port={port} user={OS_USER} dbname=postgres"
                        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        times["promoted"] = time.perf_counter()
                        return
                except psycopg.OperationalError:
                    conn = None  # not accepting yet (or restarted): connect again
            stop.wait(POLL)
    finally:
        if conn is not None:
            conn.close()


def children_cpu() -> float:
    """User + system seconds of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else float("nan")


class Interrupted(Exception):
    """SIGTERM: clean up as for Ctrl-C."""


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted


# -- the bench -------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    age: bool = False  # the second contender is pitr encrypting (ratio: encrypted / plain)

    def add(self, metric: str, pitr: float, pgbr: float, unit: str, digits: int = 2) -> None:
        num, den = (pgbr, pitr) if self.age else (pitr, pgbr)
        ratio = f"{num / den:.2f}x" if den else "-"
        self.rows.append((f"{metric} ({unit})", f"{pitr:.{digits}f}", f"{pgbr:.{digits}f}", ratio))

    def table(self) -> str:
        head = ("metric", "pitr", "pgBackRest", "ratio (pitr/pgBackRest)")
        if self.age:
            head = ("metric", "pitr", "pitr, encryption = age", "ratio (age/plain)")
        rows = [head, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir)
        pw = pwd.getpwnam(OS_USER)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, pw.pw_dir
        self.as_root = os.geteuid() == 0
        if not self.as_root and os.geteuid() != self.uid:
            raise SystemExit(f"run as root or as {OS_USER}")
        self.port = free_port()
        self.data = self.work / "pg" / "data"
        self.sock = self.work / "sock"
        self.pitr_conf = self.work / "pitr.toml"
        self.pgbr_conf = self.work / "pgbackrest.conf"
        self.started: list[Path] = []  # data directories with a postmaster we started
        self.children: list[subprocess.Popen[str]] = []
        self.age = bool(args.age)
        self.age_conf = self.work / "pitr-age.toml"
        self.results = Results(age=self.age)
        self.env = {
            "PATH": f"{PITR.parent}:{PG_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "XDG_STATE_HOME": str(self.work / "state"),
            "PGHOST": "127.0.0.1",
            "PGUSER": OS_USER,
            # An installed pitr has compiled bytecode; an editable tree the postgres user cannot
            # write to would be compiled again by every process: cache it in the work directory.
            "PYTHONPYCACHEPREFIX": str(self.work / "pycache"),
        }

    # -- processes as postgres -----------------------------------------------------------

    def _user(self) -> dict[str, Any]:
        if not self.as_root:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def run(
        self, argv: Sequence[str | os.PathLike[str]], *, check: bool = True, timeout: float = 7200
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [os.fspath(a) for a in argv],
            env=self.env,
            cwd=self.work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._user(),
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(os.fspath(a) for a in argv)}: exit {done.returncode}\n"
                f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
        return done

    def timed(self, argv: Sequence[str | os.PathLike[str]]) -> tuple[float, float, str]:
        """Wall time, CPU time (user + system, of the command and the processes it waited
        for: pgBackRest's workers, pitr's threads) and stdout."""
        started, cpu = time.perf_counter(), children_cpu()
        done = self.run(argv)
        return time.perf_counter() - started, children_cpu() - cpu, done.stdout

    def popen(self, argv: Sequence[str | os.PathLike[str]]) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [os.fspath(a) for a in argv],
            env=self.env,
            cwd=self.work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **self._user(),
        )
        self.children.append(child)
        return child

    def mkdir(self, path: Path, mode: int = 0o755) -> Path:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        if self.as_root:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.as_root:
            os.chown(path, self.uid, self.gid)
        path.chmod(0o644)

    def pitr(self, *args: str, conf: Path | None = None) -> list[str]:
        return [str(PITR), "--config", str(conf or self.pitr_conf), *args]

    def pgbr(self, *args: str, conf: Path | None = None) -> list[str]:
        return [str(PGBACKREST), f"--config={conf or self.pgbr_conf}", f"--stanza={STANZA}", *args]

    # -- SQL -----------------------------------------------------------------------------

    def sql(self, query: str, port: int | None = None) -> list[tuple[Any, ...]]:
        dsn = f"host=127.0.0.1 port={port or self.port} user={OS_USER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description is not None else []

    def in_recovery(self, port: int) -> bool | None:
        """pg_is_in_recovery() on ``port``; None while it does not accept connections."""
        try:
            return bool(self.sql("SELECT pg_is_in_recovery()", port)[0][0])
        except psycopg.OperationalError:
            return None

    def fingerprint(self, port: int | None = None) -> tuple[int, int]:
        rows = self.sql(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
            "(SELECT count(*) FROM pgbench_history)",
            port,
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- set-up --------------------------------------------------------------------------

    def prepare_workdir(self) -> None:
        if self.work.exists() and any(self.work.iterdir()):
            if not (self.work / MARKER).exists():
                raise SystemExit(f"{self.work} is not empty and was not made by this script")
            shutil.rmtree(self.work)
        self.mkdir(self.work)
        (self.work / MARKER).touch()
        for name in (
            "pg",
            "sock",
            "state",
            "restore",
            "segments",
            "pgbackrest",
            "pycache",
        ):
            self.mkdir(self.work / name)
        for name in ("pitr-repo", "pitr-seg-repo", "pitr-age-repo"):
            self.mkdir(self.work / name)

    def compile_pitr(self) -> None:
        """Bytecode for every pitr module (as ``pip install`` would have made it)."""
        import pitr

        source = Path(pitr.__file__).parent
        self.run([sys.executable, "-m", "compileall", "-q", source], check=False)

    def write_configs(self) -> None:
        for conf, repo in (
            (self.pitr_conf, "pitr-repo"),
            (self.work / "pitr-seg.toml", "pitr-seg-repo"),
            (self.work / "pitr-async.toml", "pitr-async-repo"),
            (self.work / "pitr-async-sh.toml", "pitr-async-sh-repo"),
        ):
            self.write(
                conf,
                f'spool_dir = "{self.work / f"{repo}-spool"}"\n\n'
                f'[repository]\nurl = "file://{self.work / repo}"\ncompression = "zstd"\n'
                "compression_level = 3\nconcurrency = 2\n\n"
                f'[instances.{INSTANCE}]\nengine = "postgresql"\ndatadir = "{self.data}"\n'
                f'host = "127.0.0.1"\nport = {self.port}\nuser = "{OS_USER}"\n'
                f'bindir = "{PG_BIN}"\n',
            )
        if self.age:
            self.write_age_config()
        base = self.work / "pgbackrest"
        for conf, repo, mode in (
            (self.pgbr_conf, "pgbackrest-repo", "n"),
            (self.work / "pgbackrest-seg.conf", "pgbackrest-seg-repo", "n"),
            (self.work / "pgbackrest-async.conf", "pgbackrest-async-repo", "y"),
        ):
            self.mkdir(self.work / repo, 0o750)
            self.write(
                conf,
                "[global]\n"
                f"repo1-path={self.work / repo}\n"
                "repo1-retention-full=99\n"
                "compress-type=zst\ncompress-level=3\nprocess-max=2\n"
                f"start-fast=y\narchive-async={mode}\n"
                f"log-path={base}\nlock-path={base}\nspool-path={base}-{repo}\n"
                "log-level-console=warn\nlog-level-stderr=warn\nlog-level-file=off\n\n"
                f"[{STANZA}]\npg1-path={self.data}\npg1-port={self.port}\n"
                f"pg1-socket-path={self.sock}\n",
            )

    def write_age_config(self) -> None:
        """The same repository settings, encrypting to a new identity (kept beside it)."""
        identity = self.work / "identity.txt"
        made = subprocess.run(["age-keygen", "-o", str(identity)], capture_output=True,
                              text=True, check=True)  # fmt: skip
        if self.as_root:
            os.chown(identity, self.uid, self.gid)
        text = self.pitr_conf.read_text().replace(
            str(self.work / "pitr-repo"), str(self.work / "pitr-age-repo")
        )
        encryption = (
            f'encryption = "age"\nrecipients = ["{made.stderr.split()[-1]}"]\n'
            f'identity_file = "{identity}"\n'
        )
        text = text.replace("concurrency = 2\n", f"concurrency = 2\n{encryption}")
        self.write(self.age_conf, text)

    def init_cluster(self) -> None:
        say(f"initdb; cluster on port {self.port} under {self.work}")
        self.run(
            [
                PG_BIN / "initdb",
                "-D",
                self.data,
                "-U",
                OS_USER,
                "-A",
                "trust",
                "--data-checksums",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )
        second = (
            self.pitr("wal-push", "--quiet", conf=self.age_conf)
            if self.age
            else self.pgbr("archive-push")
        )
        archive = f"{shlex.join(self.pitr('wal-push', '--quiet'))} %p && {shlex.join(second)} %p"
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sock}'",
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": "'" + archive.replace("'", "''") + "'",
            "max_wal_senders": "3",
            "shared_buffers": "'256MB'",
            "max_wal_size": "'2GB'",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "log_checkpoints": "on",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# benchmarks/postgresql.py\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.start(self.data, self.work / "pg" / "server.log")

    def start(self, datadir: Path, logfile: Path, port: int | None = None) -> None:
        self.started.append(datadir)
        argv: list[str | os.PathLike[str]] = [
            PG_BIN / "pg_ctl",
            "start",
            "-D",
            datadir,
            "-l",
            logfile,
            "-w",
            "-t",
            "3600",
        ]
        self.run([*argv, *(["-o", f"-p {port}"] if port else [])])

    def stop(self, datadir: Path, mode: str = "fast") -> None:
        if (datadir / "postmaster.pid").exists():
            self.run(
                [PG_BIN / "pg_ctl", "stop", "-D", datadir, "-m", mode, "-w", "-t", "120"],
                check=False,
            )

    def pgbench(self, *args: str) -> subprocess.Popen[str]:
        return self.popen(
            [
                PG_BIN / "pgbench",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                OS_USER,
                *args,
                "postgres",
            ]
        )

    def finish(self, child: subprocess.Popen[str], what: str) -> str:
        out, _ = child.communicate()
        self.children.remove(child)
        if child.returncode != 0:
            raise RuntimeError(f"{what}: exit {child.returncode}\n{out[-3000:]}")
        return out

    def sync_archive(self) -> str:
        """Switch WAL and wait until archive_command (both tools) has archived it."""
        name, switched = self.sql("SELECT pg_walfile_name(pg_switch_wal()), now()")[0]
        deadline = time.monotonic() + 1800
        while True:
            archived, failed, failed_at = self.sql(
                "SELECT last_archived_wal, last_failed_wal, last_failed_time FROM pg_stat_archiver"
            )[0]
            if (archived or "")[:24] >= name:
                return str(name)
            if failed_at is not None and failed_at >= switched:
                log = (self.work / "pg" / "server.log").read_text(errors="replace")
                tail = "\n".join(log.splitlines()[-10:])
                raise RuntimeError(f"archive_command failed for {failed}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not archived within 30 min")
            time.sleep(0.2)

    # -- the measurements ----------------------------------------------------------------

    def quiet(self, what: str) -> None:
        """Wait for a calm machine (``--max-load``), then record the load average."""
        waited = 0.0
        while self.args.max_load and os.getloadavg()[0] > self.args.max_load:
            if waited >= self.args.load_wait:
                say(f"load still {load()} after {waited:.0f} s: measuring anyway")
                break
            time.sleep(10)
            waited += 10
        line = f"{what}: load average {load()}" + (f" (waited {waited:.0f} s)" if waited else "")
        self.results.loads.append(line)
        say(line)

    def settle(self) -> None:
        """Before a timed backup: flush dirty buffers and written files, so that neither tool
        pays for what the load (or the other tool) left behind."""
        self.sql("CHECKPOINT")
        subprocess.run(["sync"], check=True)

    def name(self, tool: str) -> str:
        """How a contender is called in the log."""
        return "pitr+age" if tool == "pgbr" and self.age else tool

    def pitr_backup(self, kind: str, conf: Path | None = None) -> tuple[float, float, str]:
        self.settle()
        seconds, cpu, out = self.timed(self.pitr("backup", "--type", kind, "--json", conf=conf))
        return seconds, cpu, str(json.loads(out)["backup"]["id"])

    def pgbr_backup(self, kind: str) -> tuple[float, float, str]:
        if self.age:
            return self.pitr_backup(kind, self.age_conf)
        self.settle()
        seconds, cpu, _ = self.timed(self.pgbr(f"--type={kind}", "backup"))
        info = json.loads(self.run(self.pgbr("--output=json", "info")).stdout)
        return seconds, cpu, str(info[0]["backup"][-1]["label"])

    def pitr_backup_dir(self, backup_id: str) -> Path:
        return self.work / "pitr-repo" / INSTANCE / "backups" / backup_id

    def pgbr_backup_dir(self, label: str) -> Path:
        if self.age:
            return self.work / "pitr-age-repo" / INSTANCE / "backups" / label
        return self.work / "pgbackrest-repo" / "backup" / STANZA / label

    def backups(self, kind: str, runs: int) -> None:
        times: dict[str, list[float]] = {"pitr": [], "pgbr": []}
        cpus: dict[str, list[float]] = {"pitr": [], "pgbr": []}
        sizes: dict[str, list[int]] = {"pitr": [], "pgbr": []}
        for i in range(runs):
            order = ("pitr", "pgbr") if i % 2 == 0 else ("pgbr", "pitr")
            for tool in order:
                self.quiet(f"{kind} backup {i + 1}/{runs}, {self.name(tool)}")
                if tool == "pitr":
                    seconds, cpu, ident = self.pitr_backup(kind)
                    size = disk_bytes(self.pitr_backup_dir(ident))
                else:
                    seconds, cpu, ident = self.pgbr_backup(kind)
                    size = disk_bytes(self.pgbr_backup_dir(ident))
                times[tool].append(seconds)
                cpus[tool].append(cpu)
                sizes[tool].append(size)
                say(
                    f"  {self.name(tool)} {kind} backup {ident}: {seconds:.2f} s "
                    f"(CPU {cpu:.2f} s), "
                    f"{size / MB:.1f} MB"
                )
        label = f"{kind} backup, median of {runs}" if runs > 1 else f"{kind} backup"
        self.results.add(f"{label}: wall time", median(times["pitr"]), median(times["pgbr"]), "s")
        self.results.add(f"{label}: CPU time", median(cpus["pitr"]), median(cpus["pgbr"]), "s")
        self.results.add(
            f"{kind} backup: size on disk",
            median(sizes["pitr"]) / MB,
            median(sizes["pgbr"]) / MB,
            "MB",
            1,
        )

    def copy_segments(self, count: int) -> list[Path]:
        """The newest ``count`` archived segments still in pg_wal, copied aside."""
        status = self.data / "pg_wal" / "archive_status"
        names = sorted(
            p.name.removesuffix(".done")
            for p in status.glob("*.done")
            if len(p.name) == 24 + len(".done")
        )
        copies: list[Path] = []
        for name in reversed(names):
            target = self.work / "segments" / name
            try:
                shutil.copyfile(self.data / "pg_wal" / name, target)
            except FileNotFoundError:
                continue  # recycled meanwhile
            if self.as_root:
                os.chown(target, self.uid, self.gid)
            copies.append(target)
            if len(copies) == count:
                break
        return sorted(copies)

    def archive_burst(self, segments: list[Path]) -> None:
        """Asynchronous archiving (``pitr wal-push --async``, pgBackRest ``archive-async=y``):
        ``segments`` marked ready at once in a copy of pg_wal, then archive_command run for
        each in turn through ``sh -c`` and the segment marked done, as PostgreSQL's archiver
        does. Wall time from the first call until the last returned, each into its own empty
        repository. pitr twice: as ``pitr wal-push --async %p``, and in the documented shell
        form that answers from the worker's status file without starting Python."""
        conf = self.work / "pgbackrest-async.conf"
        self.run(self.pgbr("stanza-create", conf=conf))
        # pgBackRest's asynchronous mode wants pg_wal inside pg1-path: push from the copy.
        push_conf = self.work / "pgbackrest-async-push.conf"
        self.write(
            push_conf,
            conf.read_text().replace(
                f"pg1-path={self.data}", f"pg1-path={self.work / 'burst-pgbr'}"
            ),
        )
        control = self.mkdir(self.work / "burst-pgbr" / "global", 0o700) / "pg_control"
        shutil.copyfile(self.data / "global" / "pg_control", control)  # it checks the version
        if self.as_root:
            os.chown(control, self.uid, self.gid)
        pitr_async = shlex.join(
            self.pitr("wal-push", "--async", conf=self.work / "pitr-async.toml")
        )
        ok = self.work / "pitr-async-sh-repo-spool" / INSTANCE / "archive"
        pitr_sh = shlex.join(
            self.pitr("wal-push", "--async", conf=self.work / "pitr-async-sh.toml")
        )
        commands = {
            "pitr": f"{pitr_async} %p",
            "pitr-sh": shell_form(ok, pitr_sh),
            "pgbr": f"{shlex.join(self.pgbr('archive-push', conf=push_conf))} %p",
        }
        self.quiet(f"asynchronous archiving, a burst of {len(segments)} segments")
        totals: dict[str, float] = {}
        calls: dict[str, list[float]] = {}
        for tool, command in commands.items():
            pg_wal = self.mkdir(self.work / f"burst-{tool}" / "pg_wal", 0o700)
            status = self.mkdir(pg_wal / "archive_status", 0o700)
            for seg in segments:
                shutil.copyfile(seg, pg_wal / seg.name)
                self.write(status / f"{seg.name}.ready", "")
                if self.as_root:
                    os.chown(pg_wal / seg.name, self.uid, self.gid)
            started = time.perf_counter()
            calls[tool] = []
            for seg in segments:
                call = time.perf_counter()
                line = command.replace("%p", str(pg_wal / seg.name)).replace("%f", seg.name)
                self.run(["/bin/sh", "-c", line])
                calls[tool].append((time.perf_counter() - call) * 1000)
                (status / f"{seg.name}.ready").rename(status / f"{seg.name}.done")
            totals[tool] = time.perf_counter() - started
            say(f"  {command.split()[-2]} ({tool}) ms: {[round(c) for c in calls[tool]]}")
        n = len(segments)
        for tool, form in (("pitr", "wal-push --async"), ("pitr-sh", "shell form")):
            self.results.add(
                f"asynchronous archiving ({form}), {n} ready segments, total",
                totals[tool], totals["pgbr"], "s", 2,
            )  # fmt: skip
            self.results.add(
                f"asynchronous archiving ({form}), {n} ready segments, median call",
                median(calls[tool]), median(calls["pgbr"]), "ms", 0,
            )  # fmt: skip

    def archive_cost(self, segments: list[Path]) -> None:
        self.run(self.pgbr("stanza-create", conf=self.work / "pgbackrest-seg.conf"))
        pitr_conf = self.work / "pitr-seg.toml"
        pgbr_conf = self.work / "pgbackrest-seg.conf"
        self.quiet(f"archive_command cost, {len(segments)} segments")
        for seg in segments:  # warm the page cache: both read the same file
            seg.read_bytes()
        costs: dict[str, list[float]] = {"pitr": [], "pgbr": []}
        cpus: dict[str, list[float]] = {"pitr": [], "pgbr": []}
        for i, seg in enumerate(segments):
            calls = {
                "pitr": self.pitr("wal-push", "--quiet", str(seg), conf=pitr_conf),
                "pgbr": self.pgbr("archive-push", str(seg), conf=pgbr_conf),
            }
            for tool in ("pitr", "pgbr") if i % 2 == 0 else ("pgbr", "pitr"):
                wall, cpu, _ = self.timed(calls[tool])
                costs[tool].append(wall * 1000)
                cpus[tool].append(cpu * 1000)
        say(f"  pitr wal-push ms: {[round(c) for c in costs['pitr']]}")
        say(f"  pgbackrest archive-push ms: {[round(c) for c in costs['pgbr']]}")
        n = len(segments)
        self.results.add(
            f"archive_command per segment, median of {n}",
            median(costs["pitr"]),
            median(costs["pgbr"]),
            "ms",
            0,
        )
        self.results.add(
            f"archive_command per segment, p90 of {n}",
            p90(costs["pitr"]),
            p90(costs["pgbr"]),
            "ms",
            0,
        )
        self.results.add(
            f"archive_command per segment, CPU time, median of {n}",
            median(cpus["pitr"]),
            median(cpus["pgbr"]),
            "ms",
            0,
        )
        pitr_wal = disk_bytes(self.work / "pitr-seg-repo" / INSTANCE / "logs")
        pgbr_wal = disk_bytes(self.work / "pgbackrest-seg-repo" / "archive")
        self.results.add(
            f"{n} archived segments: size on disk", pitr_wal / MB, pgbr_wal / MB, "MB", 1
        )
        startup: dict[str, list[float]] = {"pitr": [], "pgbr": []}
        for _ in range(10):
            startup["pitr"].append(self.timed([PITR, "--version"])[0] * 1000)
            startup["pgbr"].append(self.timed([PGBACKREST, "version"])[0] * 1000)
        self.results.add(
            "process start-up (pitr --version / pgbackrest version), median of 10",
            median(startup["pitr"]),
            median(startup["pgbr"]),
            "ms",
            0,
        )

    def restore_pitr(
        self, target: datetime, dest: Path, port: int, conf: Path | None = None
    ) -> dict[str, float]:
        """``pitr restore --port``: it returns once the copy is promoted and checked."""
        self.started.append(dest)
        stop, times = threading.Event(), dict[str, float]()
        watcher = threading.Thread(target=watch_recovery, args=(dest, port, stop, times))
        started, cpu = time.perf_counter(), children_cpu()
        watcher.start()
        try:
            argv = self.pitr("restore", "--at", target.isoformat(), "--to", str(dest), conf=conf)
            self.run([*argv, "--port", str(port), "--json"])
            ended = time.perf_counter()
        finally:
            stop.set()
            watcher.join()
        if self.in_recovery(port) is not False:
            raise RuntimeError("pitr restore returned before the copy was out of recovery")
        base = times.get("started", ended) - started
        promoted = times.get("promoted", ended) - started
        return {
            "cpu": children_cpu() - cpu,
            "total": ended - started,
            "base": base,
            "replay": promoted - base,
            "after": ended - started - promoted,
        }

    def restore_pgbr(self, target: datetime, dest: Path, port: int) -> dict[str, float]:
        """``pgbackrest restore``, then ``pg_ctl start`` and wait for the end of recovery."""
        started, cpu = time.perf_counter(), children_cpu()
        self.run(
            self.pgbr(
                f"--pg1-path={dest}",
                "--type=time",
                f"--target={target.isoformat(sep=' ')}",
                "--target-action=promote",
                "--archive-mode=off",
                "restore",
            )
        )
        restored = time.perf_counter()
        self.started.append(dest)
        log = dest.parent / f"{dest.name}-server.log"
        self.run([PG_BIN / "pg_ctl", "start", "-D", dest, "-l", log, "-W", "-o", f"-p {port}"])
        times: dict[str, float] = {}
        watch_recovery(dest, port, threading.Event(), times, start_timeout=60)
        if "promoted" not in times:
            raise RuntimeError(f"pgBackRest's restored server stopped: see {log}")
        ended = times["promoted"]
        return {
            "cpu": children_cpu() - cpu,
            "total": ended - started,
            "base": restored - started,
            "replay": ended - restored,
            "after": 0.0,
        }

    def restores(self, target: datetime, expected: tuple[int, int], runs: int) -> None:
        totals: dict[str, list[dict[str, float]]] = {"pitr": [], "pgbr": []}
        for i in range(runs):
            for tool in ("pitr", "pgbr") if i % 2 == 0 else ("pgbr", "pitr"):
                dest = self.work / "restore" / f"{tool}-{i}"
                port = free_port()
                self.quiet(f"restore {i + 1}/{runs}, {self.name(tool)}")
                subprocess.run(["sync"], check=True)
                if tool == "pitr":
                    phases = self.restore_pitr(target, dest, port)
                elif self.age:
                    phases = self.restore_pitr(target, dest, port, self.age_conf)
                else:
                    self.mkdir(dest, 0o700)
                    phases = self.restore_pgbr(target, dest, port)
                got = self.fingerprint(port)
                say(
                    f"  {self.name(tool)} restore: {phases['total']:.2f} s "
                    f"(CPU {phases['cpu']:.2f} s; base {phases['base']:.2f} s, "
                    f"replay {phases['replay']:.2f} s, after {phases['after']:.2f} s); "
                    f"sum(abalance), history rows = {got}"
                )
                if got != expected:
                    raise RuntimeError(f"{tool}: restored {got}, expected {expected}")
                totals[tool].append(phases)
                self.stop(dest, "immediate")
                self.started.remove(dest)
                shutil.rmtree(dest)

        def med(tool: str, key: str) -> float:
            return median([p[key] for p in totals[tool]])

        what = f"median of {runs}" if runs > 1 else "one run each"
        self.results.add(
            f"restore + replay to time, until promoted ({what})",
            med("pitr", "total"),
            med("pgbr", "total"),
            "s",
        )
        self.results.add(
            "  CPU time of the restore command (and what it waited for)",
            med("pitr", "cpu"),
            med("pgbr", "cpu"),
            "s",
        )
        self.results.add(
            "  of which base restore (until the server starts)",
            med("pitr", "base"),
            med("pgbr", "base"),
            "s",
        )
        self.results.add(
            "  of which start, replay, promote", med("pitr", "replay"), med("pgbr", "replay"), "s"
        )
        self.results.add(
            "  of which after promotion (checks, exit)",
            med("pitr", "after"),
            med("pgbr", "after"),
            "s",
        )
        self.results.notes.append(
            f"both restored copies match the original at the target: sum(abalance) = "
            f"{expected[0]}, pgbench_history rows = {expected[1]}"
        )

    # -- the whole run -------------------------------------------------------------------

    def load_database(self) -> None:
        """The work directory, both repositories, a fresh cluster archiving into them, and
        ``pgbench -i -s SCALE`` checkpointed and archived (shared with incremental.py)."""
        args = self.args
        self.prepare_workdir()
        self.write_configs()
        self.compile_pitr()
        self.init_cluster()
        if not self.age:
            self.run(self.pgbr("stanza-create"))
        say(f"pgbench -i -s {args.scale}")
        started = time.perf_counter()
        self.finish(self.pgbench("-i", "-s", str(args.scale), "-q"), "pgbench -i")
        self.sql("CHECKPOINT")
        self.sync_archive()
        size = int(self.sql("SELECT pg_database_size('postgres')")[0][0])
        say(f"  {time.perf_counter() - started:.0f} s, database {size / MB:.0f} MB")
        self.results.notes.append(f"pgbench -i -s {args.scale}: database {size / MB:.0f} MB")

    def main(self) -> None:
        args = self.args
        self.load_database()
        if args.archive_only:
            segments = self.copy_segments(args.segments)
            self.archive_cost(segments)
            self.archive_burst(segments)
            self.report()
            return

        self.backups("full", args.full_runs)

        say(f"pgbench -c 2 -T {args.warmup} (changes for the differential)")
        self.finish(self.pgbench("-c", "2", "-j", "2", "-T", str(args.warmup)), "pgbench")
        self.sync_archive()
        self.backups("diff", args.diff_runs)

        say(f"pgbench -c 2 -T {args.load} (the WAL to replay)")
        wal_start = self.sql("SELECT pg_current_wal_lsn()")[0][0]
        out = self.finish(self.pgbench("-c", "2", "-j", "2", "-T", str(args.load)), "pgbench")
        tps = next((ln for ln in out.splitlines() if ln.startswith("tps")), "tps ?")
        time.sleep(0.01)
        target: datetime = self.sql("SELECT clock_timestamp()")[0][0]
        expected = self.fingerprint()
        time.sleep(0.01)
        self.sql("CREATE TABLE bench_marker AS SELECT 1 AS done")  # a commit past the target
        wal = int(self.sql(f"SELECT pg_current_wal_lsn() - '{wal_start}'")[0][0])
        last = self.sync_archive()
        target = target.astimezone(UTC)
        say(f"  {tps}; {wal / MB:.0f} MB of WAL; target {target.isoformat()}; up to {last}")
        self.results.notes.append(
            f"replayed load: pgbench -c 2 -T {args.load}, {tps.strip()}, {wal / MB:.0f} MB of WAL"
            f" (~{wal / (16 * MB):.0f} segments) past the differential"
        )
        segments = self.copy_segments(args.segments)

        self.restores(target, expected, args.restore_runs)
        if not self.age:
            self.archive_cost(segments)
            self.archive_burst(segments)

        pitr_wal = disk_bytes(self.work / "pitr-repo" / INSTANCE / "logs")
        other = ("pitr-age-repo", INSTANCE, "logs") if self.age else ("pgbackrest-repo", "archive")
        pgbr_wal = disk_bytes(self.work.joinpath(*other))
        self.results.add(
            "WAL archive of the whole run: size on disk", pitr_wal / MB, pgbr_wal / MB, "MB", 1
        )
        self.report()

    def report(self) -> None:
        out = self.results
        print()
        print(out.table())
        print()
        for note in out.notes:
            print(f"- {note}")
        other = "" if self.age else f"{self.run([PGBACKREST, 'version']).stdout.strip()}, "
        print(
            f"- pitr {self.run([PITR, '--version']).stdout.strip()}, {other}"
            f"PostgreSQL 15, {os.cpu_count()} CPUs"
        )
        print("- load averages (1, 5, 15 min) before each measurement:")
        for line in out.loads:
            print(f"    {line}")

    def cleanup(self) -> None:
        for child in self.children:
            with contextlib.suppress(OSError):
                child.kill()
                child.wait(10)
        for datadir in reversed(self.started):
            with contextlib.suppress(Exception):
                self.stop(datadir, "immediate")
        if self.args.keep:
            say(f"kept {self.work}")
        elif (self.work / MARKER).exists():
            shutil.rmtree(self.work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scale", type=int, default=100, help="pgbench -i -s SCALE")
    parser.add_argument("--workdir", default="/tmp/pitr-pg-bench")
    parser.add_argument("--full-runs", type=int, default=3, help="full backups per tool")
    parser.add_argument("--diff-runs", type=int, default=2, help="differentials per tool")
    parser.add_argument("--restore-runs", type=int, default=2, help="restores per tool")
    parser.add_argument("--segments", type=int, default=20, help="segments for archive cost")
    parser.add_argument(
        "--archive-only", action="store_true", help="only the archive_command measurements"
    )
    parser.add_argument("--warmup", type=int, default=20, help="pgbench s before the diff")
    parser.add_argument("--load", type=int, default=60, help="pgbench s of WAL to replay")
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="wait while the 1-min load average is above (0: never wait)",
    )
    parser.add_argument("--load-wait", type=float, default=120, help="wait at most this long")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--age", action="store_true", help="pitr plain vs pitr encrypting (not pgBackRest)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(
        signal.SIGTERM, _on_term
    )
    try:
        bench.main()
    except (KeyboardInterrupt, Interrupted):
        say("interrupted: cleaning up")
        return 130
    finally:
        bench.cleanup()
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
