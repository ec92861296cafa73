"""``pitr archive --follow`` (PostgreSQL) against ``archive_command`` and pgBackRest, one run.

    /opt/pitr/venv-follow/bin/python benchmarks/pg_follow.py [--seconds 90] [--rate 50]
        [--interval 10] [--rpo-only | --cpu-only]

Run as root: the cluster, pitr and pgBackRest run as ``postgres`` (``subprocess``'s ``user=``).
One throwaway PostgreSQL 15 cluster on a free port under a fresh work directory
(``pgbench -i -s 10``), removed at the end. Measured:

1. RPO while ``pgbench -c 2 -R RATE`` runs: every second, the age of the newest WAL in the
   repository (now minus the newest commit time any index document there records, the
   partial segment's under ``open/`` included): with ``pitr archive --follow``
   (``follow_interval``: ``--interval``, default 10 s), then with
   ``archive_command = 'pitr wal-push %p'`` and ``archive_timeout = 60``. Goal: ≤ 10 s at
   every sample with ``--follow``.
2. CPU per 16 MB of WAL: user + system time of the follower and every process it ran
   (``pg_receivewal``, ``pg_waldump``; GNU ``time`` around it) over the WAL it streamed under
   ``pgbench -c 2`` running bulk inserts (about 1 MB of WAL each), against
   ``pgbackrest archive-push`` (zstd level 3, one call per segment, as ``archive_command`` runs
   it) on the same segments, kept in ``pg_wal`` (``wal_keep_size``); ``pitr wal-push`` and
   ``pg_waldump`` (pitr's indexing) on them too, for reference. Goal: ≤ 1.0×. CPU time, not
   wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PITR = Path(sys.executable).with_name("pitr")
PGBACKREST = "/usr/bin/pgbackrest"
OS_USER = "postgres"
SEGMENT = 16 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, work: Path, seconds: float, rate: int, interval: float) -> None:
        self.work, self.seconds, self.rate, self.interval = work, seconds, rate, interval
        self.data = work / "data"
        self.port = free_port()
        pw = pwd.getpwnam(OS_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.receiver_cpu = 0.0

    # -- plumbing ----------------------------------------------------------------------------

    def run(
        self, argv: list[str], check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=self.uid, group=self.gid, check=check, text=True,
                              capture_output=True, cwd=self.work, **kw)  # fmt: skip

    def start(self, argv: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(argv, user=self.uid, group=self.gid, text=True, cwd=self.work,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        dsn = f"host=127.0.0.1 port={self.port} user={OS_USER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description is not None else []

    def lsn(self) -> int:
        return int(self.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0])

    def config(self, name: str) -> Path:
        path = self.work / f"{name}.toml"
        path.write_text(
            f'spool_dir = "{self.work / name}-spool"\nlock_dir = "{self.work / name}-locks"\n\n'
            f'[repository]\nurl = "file://{self.work / name}-repo"\n\n'
            f'[instances.bench]\nengine = "postgresql"\ndatadir = "{self.data}"\n'
            f'host = "127.0.0.1"\nport = {self.port}\nuser = "{OS_USER}"\nbindir = "{PG_BIN}"\n'
            f"follow_interval = {self.interval}\n"
        )
        return path

    def setup(self) -> None:
        os.chown(self.work, self.uid, self.gid)
        self.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", OS_USER,
                  "--no-sync"])  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                     f"unix_socket_directories = '{self.work}'\narchive_mode = on\n"
                     "archive_command = '/bin/true'\nwal_keep_size = 4GB\nmax_wal_size = 4GB\n"
                     "fsync = off\n")  # fmt: skip
        self.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.work / "pg.log"),
                  "-w", "start"])  # fmt: skip
        self.pgbench("-i", "-s", "10", "-q")

    def pgbench(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["/usr/bin/pgbench", "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", OS_USER, *args, "postgres"])  # fmt: skip

    def teardown(self) -> None:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       user=self.uid, capture_output=True, check=False)  # fmt: skip

    # -- the follower, timed -----------------------------------------------------------------

    def follow(self, conf: Path) -> tuple[subprocess.Popen[str], Path]:
        out = conf.with_suffix(".time")
        argv = ["/usr/bin/time", "-f", "%U %S", "-o", str(out), str(PITR), "--config",
                str(conf), "archive", "--follow"]  # fmt: skip
        child = self.start(argv)
        deadline = time.monotonic() + 60
        while not self.sql("SELECT 1 FROM pg_stat_replication") and time.monotonic() < deadline:
            time.sleep(0.2)
        return child, out

    def stop_follower(self, child: subprocess.Popen[str], out: Path) -> float:
        """SIGTERM to pitr (not to ``time``); the CPU seconds of pitr and its children
        (``self.receiver_cpu``: those of its ``pg_receivewal`` alone, just before)."""
        pitr = int(children(child.pid)[0])
        comm = {k: Path(f"/proc/{k}/comm").read_text().strip() for k in children(pitr)}
        self.receiver_cpu = sum(
            cpu_seconds(int(k)) for k, c in comm.items() if c == "pg_receivewal"
        )
        os.kill(pitr, signal.SIGTERM)
        child.communicate(timeout=120)
        user, system = out.read_text().split()[-2:]
        return float(user) + float(system)

    # -- 1. the age of the newest WAL in the repository ------------------------------------

    def ages(self, repo: Path, stop: threading.Event) -> list[float]:
        seen: dict[Path, tuple[int, float]] = {}
        found: list[float] = []
        while not stop.wait(1.0):
            newest = 0.0
            for path in list(repo.rglob("*.json")):
                try:
                    mtime = path.stat().st_mtime_ns
                    if path not in seen or seen[path][0] != mtime:
                        doc = json.loads(path.read_text())
                        moment = doc.get("max_commit") or doc.get("last_commit")
                        when = datetime.fromisoformat(moment).timestamp() if moment else 0.0
                        seen[path] = (mtime, when)
                except (OSError, ValueError):
                    continue
                newest = max(newest, seen[path][1])
            if newest:
                found.append(time.time() - newest)
        return found

    def rpo(self, name: str, follow: bool) -> tuple[list[float], float, int]:
        conf = self.config(name)
        repo = self.work / f"{name}-repo"
        if follow:
            child, out = self.follow(conf)
        else:
            command = f"{PITR} --config {conf} wal-push %p"
            self.sql(f"ALTER SYSTEM SET archive_command = '{command}'")
            self.sql("ALTER SYSTEM SET archive_timeout = 60")
            self.sql("SELECT pg_reload_conf()")
            self.sql("SELECT pg_switch_wal()")  # the repository starts level in both runs
        time.sleep(3)
        stop = threading.Event()
        samples: list[float] = []
        sampler = threading.Thread(target=lambda: samples.extend(self.ages(repo, stop)))
        sampler.start()
        start = self.lsn()
        self.pgbench("-c", "2", "-T", str(int(self.seconds)), "-R", str(self.rate))
        wal = self.lsn() - start
        stop.set()
        sampler.join()
        cpu = 0.0
        if follow:
            cpu = self.stop_follower(child, out)
        else:
            self.sql("ALTER SYSTEM RESET archive_command")
            self.sql("ALTER SYSTEM RESET archive_timeout")
            self.sql("ALTER SYSTEM SET archive_command = '/bin/true'")
            self.sql("SELECT pg_reload_conf()")
        return samples, cpu, wal

    # -- 2. CPU per 16 MB ----------------------------------------------------------------

    def cpu(self) -> dict[str, float]:
        conf = self.config("heavy")
        child, out = self.follow(conf)
        start = self.lsn()
        self.pgbench("-c", "2", "-T", str(int(self.seconds)), "-f", str(self.bulk()))
        self.sql("SELECT pg_switch_wal()")
        end = self.lsn()
        time.sleep(3)
        follow_cpu = self.stop_follower(child, out)
        tli = int(self.sql("SELECT timeline_id FROM pg_control_checkpoint()")[0][0])
        numbers = range(start // SEGMENT + 1, end // SEGMENT)  # complete ones, after the start
        names = [f"{tli:08X}{n // 256:08X}{n % 256:08X}" for n in numbers]
        segments = [self.data / "pg_wal" / n for n in names if (self.data / "pg_wal" / n).exists()]
        pgbr, push = self.pgbackrest_conf(), self.config("push")
        self.run([PGBACKREST, f"--config={pgbr}", "--stanza=bench", "stanza-create"])
        costs: dict[str, list[float]] = {"pgbackrest": [], "wal-push": [], "pg_waldump": []}
        for i, seg in enumerate(segments):
            calls = {
                "pgbackrest": [PGBACKREST, f"--config={pgbr}", "--stanza=bench", "archive-push",
                               str(seg)],
                "wal-push": [str(PITR), "--config", str(push), "wal-push", str(seg)],
                "pg_waldump": [str(PG_BIN / "pg_waldump"), "--rmgr=Transaction", "--rmgr=XLOG",
                               "--rmgr=Storage", str(seg)],
            }  # fmt: skip
            for tool in sorted(calls, reverse=i % 2 == 1):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                self.run(calls[tool], check=tool != "pg_waldump")  # exits 1 at the segment's end
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                costs[tool].append(after.ru_utime - before.ru_utime + after.ru_stime
                                   - before.ru_stime)  # fmt: skip
        return {
            "wal_mb": (end - start) / 2**20,
            "follow": follow_cpu / ((end - start) / SEGMENT),
            "receiver": self.receiver_cpu / ((end - start) / SEGMENT),
            "pgbackrest": statistics.fmean(costs["pgbackrest"]),
            "wal-push": statistics.fmean(costs["wal-push"]),
            "pg_waldump": statistics.fmean(costs["pg_waldump"]),
            "segments": len(segments),
        }

    def bulk(self) -> Path:
        """A pgbench script writing about 1 MB of WAL per transaction (pgbench's own on this
        small, shared machine writes too little WAL to fill segments in a minute)."""
        self.sql("CREATE TABLE IF NOT EXISTS filler (id int, v text)")
        path = self.work / "bulk.sql"
        path.write_text(
            "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 10000) g;\n"
        )
        return path

    def pgbackrest_conf(self) -> Path:
        repo = self.work / "pgbackrest-repo"
        repo.mkdir()
        os.chown(repo, self.uid, self.gid)
        path = self.work / "pgbackrest.conf"
        path.write_text(
            f"[global]\nrepo1-path={repo}\ncompress-type=zst\ncompress-level=3\n"
            f"log-path={self.work}\nlock-path={self.work}\nlog-level-console=warn\n"
            f"log-level-file=off\n\n[bench]\npg1-path={self.data}\npg1-port={self.port}\n"
            f"pg1-socket-path={self.work}\n"
        )
        return path


def report(bench: Bench, rpo_only: bool, cpu_only: bool) -> None:
    if cpu_only:
        cpu_table(bench)
        return
    follow, follow_cpu, follow_wal = bench.rpo("follow", follow=True)
    classic, _, classic_wal = bench.rpo("classic", follow=False)
    print(f"\nRPO under pgbench -c 2 -R {bench.rate}, {bench.seconds:g} s, one sample a second")
    print("| archiving | samples | median age s | max age s | samples > 10 s | WAL MB |")
    print("|---|---|---|---|---|---|")
    rows = ((f"pitr archive --follow (interval {bench.interval:g} s)", follow, follow_wal),
            ("archive_command, archive_timeout 60", classic, classic_wal))  # fmt: skip
    for label, ages, wal in rows:
        over = sum(1 for a in ages if a > 10)
        print(f"| {label} | {len(ages)} | {statistics.median(ages):.1f} | {max(ages):.1f} | "
              f"{over} | {wal / 2**20:.1f} |")  # fmt: skip
    per16 = follow_cpu / max(follow_wal / SEGMENT, 1e-9)
    print(f"\n(follower CPU at that rate: {follow_cpu:.2f} s, {follow_wal / 2**20:.1f} MB, "
          f"{per16:.2f} s per 16 MB: mostly the partial segment each interval)")  # fmt: skip
    if rpo_only:
        return
    cpu_table(bench)


def cpu_table(bench: Bench) -> None:
    costs = bench.cpu()
    print(f"\nCPU seconds per 16 MB of WAL, pgbench -c 2 bulk inserts ({costs['wal_mb']:.0f} MB; "
          f"pgBackRest and wal-push on {costs['segments']} of its segments)")  # fmt: skip
    print("| | CPU s / 16 MB | ratio to pgbackrest archive-push |")
    print("|---|---|---|")
    for label, key in (("pitr archive --follow (pg_receivewal + shipping)", "follow"),
                       ("of which pg_receivewal (streaming)", "receiver"),
                       ("pitr wal-push (archive_command)", "wal-push"),
                       ("of which pg_waldump (indexing)", "pg_waldump"),
                       ("pgbackrest archive-push (zst 3)", "pgbackrest")):  # fmt: skip
        print(f"| {label} | {costs[key]:.3f} | {costs[key] / costs['pgbackrest']:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--rate", type=int, default=50, help="pgbench transactions per second")
    parser.add_argument("--interval", type=float, default=10.0, help="follow_interval")
    parser.add_argument("--rpo-only", action="store_true", help="skip the CPU measurement")
    parser.add_argument("--cpu-only", action="store_true", help="skip the RPO measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pitr-follow-bench-"))
    bench = Bench(work, args.seconds, args.rate, args.interval)
    try:
        bench.setup()
        print(f"{datetime.now(UTC):%H:%M:%S} load {os.getloadavg()}", flush=True)
        report(bench, args.rpo_only, args.cpu_only)
        print(f"{datetime.now(UTC):%H:%M:%S} load {os.getloadavg()}", flush=True)
    finally:
        bench.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
