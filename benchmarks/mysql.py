"""pitr against the same work done by hand on a throwaway MySQL 9.x, side by side:

1. full backup: ``pitr backup`` (clone method, into a file repository) vs ``CLONE LOCAL DATA
   DIRECTORY`` then ``tar -C COPY -cf - . | zstd -3 -T2 > file``, ``sync``, the copy removed;
2. restore to a GTID including ~``--binlog-mb`` MB of binlog replay: ``pitr restore --gtid G
   --to DIR --port N`` vs by hand from the same repository objects: ``zstd -dc | tar -x``,
   ``zstd -d`` of the archived binlogs, ``mysqld`` started, ``RESET BINARY LOGS AND GTIDS``,
   ``SET GLOBAL gtid_purged``, ``mysqlbinlog --start-position --include-gtids FILES | mysql``.

MySQL 9.x runs in the test suite's Debian sid root (``tests/servers/roots.py``: built on first
use), and so do pitr (the root's virtualenv) and every by-hand step.

    python benchmarks/mysql.py                          # ~1 GB of data, ~200 MB of binlog
    python benchmarks/mysql.py --data-mb 200 --binlog-mb 50 --runs 1   # a quick look

pitr and the by-hand steps run interleaved (pitr, hand, pitr, hand...): the machine may be
shared. The table gives medians (and the load average); pitr's own log lines of its last run
of each measure, with their times, are kept in ``pitr-backup.log`` / ``pitr-restore.log`` of
the working directory and printed with ``--show-logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from servers.common import cleanup_all, free_port, make_base_dir  # noqa: E402
from servers.mariadb import MySQLServer  # noqa: E402
from servers.roots import MYSQL_ROOT, ensure_root, in_root, install_pitr  # noqa: E402

ROW_BYTES = 1024
SEQ = ("(WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s WHERE n < {last}) "
       "SELECT n FROM s) AS seq")  # fmt: skip
Row = tuple[str, float, float, str]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Bench:
    def __init__(self, work: Path) -> None:
        self.root = ensure_root(MYSQL_ROOT)
        self.work = work
        self.server = MySQLServer(root=self.root, extra_args=(
            "--innodb-buffer-pool-size=512M", "--innodb-redo-log-capacity=512M",
            "--innodb-flush-log-at-trx-commit=2", "--max-binlog-size=64M"))  # fmt: skip
        self.pitr = [*in_root(self.root, [install_pitr(self.root)]), "--config",
                     str(work / "pitr.toml")]  # fmt: skip

    def sh(self, command: str) -> None:
        """A shell command inside the root."""
        subprocess.run(in_root(self.root, ["/bin/sh", "-c", command]), check=True,
                       stderr=subprocess.DEVNULL)  # fmt: skip

    def pitr_run(self, *args: str, log: str | None = None) -> str:
        done = subprocess.run([*self.pitr, *args], check=True, capture_output=True, text=True)
        if log is not None:
            (self.work / log).write_text(done.stderr)
        return done.stdout

    def setup(self, data_mb: int) -> None:
        self.server.init()
        self.server.start(timeout=300)
        self.server.query("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
        (self.work / "repo").mkdir()
        (self.work / "pitr.toml").write_text(
            f'lock_dir = "{self.work / "locks"}"\nspool_dir = "{self.work / "spool"}"\n\n'
            f'[repository]\nurl = "file://{self.work / "repo"}"\n\n[instances.main]\n'
            f'engine = "mysql"\ndatadir = "{self.server.datadir}"\n'
            f'socket = "{self.server.socket}"\nuser = "root"\n'
        )
        rows = data_mb * 1_000_000 // ROW_BYTES
        print(f"loading ~{data_mb} MB ({rows} rows), binlog off...", flush=True)
        self.server.query("CREATE DATABASE bench")
        self.server.query("CREATE TABLE bench.big (id INT PRIMARY KEY, k INT NOT NULL, "
                          "pad VARCHAR(1100))")  # fmt: skip
        conn = self.server.connect()
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0, cte_max_recursion_depth = 1000000")
            for first in range(1, rows + 1, 100_000):
                seq = SEQ.format(first=first, last=min(rows, first + 99_999))
                pads = ", ".join(f"SHA2(n + {k}000000000, 512)" for k in range(7))
                cur.execute(f"INSERT INTO bench.big SELECT n, n % 1000, CONCAT({pads}, "
                            f"REPEAT('x', 100)) FROM {seq}")  # fmt: skip
        conn.close()

    def churn(self, binlog_mb: int, rows: int) -> None:
        count = binlog_mb * 1_000_000 // (2 * (ROW_BYTES + 40))
        print(f"writing ~{binlog_mb} MB of binlog ({count} row updates)...", flush=True)
        first = 1
        while count > 0:
            last = min(rows, first + min(1000, count) - 1)
            self.server.query("UPDATE bench.big SET k = k + 1, pad = CONCAT('u', SUBSTRING(pad, "
                              f"2)) WHERE id BETWEEN {first} AND {last}")  # fmt: skip
            count -= last - first + 1
            first = last + 1 if last < rows else 1
        self.server.query("FLUSH BINARY LOGS")

    def hand_backup(self) -> None:
        copy, out = self.work / "hand-clone", self.work / "hand.tar.zst"
        self.server.query("CLONE LOCAL DATA DIRECTORY = %s", str(copy))
        self.sh(f"tar -C {copy} -cf - . | zstd -3 -T2 -q -f -o {out} && sync {out}")
        shutil.rmtree(copy)

    def settle(self) -> None:
        """Wait until InnoDB has written every page the load dirtied: the first backup timed
        (pitr's) would otherwise compete with that flushing."""
        self.server.query("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        for _ in range(1200):
            rows = self.server.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            if int(rows[0][1]) == 0:
                return
            time.sleep(0.1)

    def bench_backup(self, runs: int) -> Row:
        self.settle()
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(timed(lambda: self.pitr_run("backup", log="pitr-backup.log")))
            theirs.append(timed(self.hand_backup))
        size = sum(p.stat().st_size for p in (self.work / "repo").rglob("backup.tar.zst")) / runs
        hand = (self.work / "hand.tar.zst").stat().st_size
        return ("full backup (clone)", statistics.median(ours), statistics.median(theirs),
                f"stored {size / 1e6:.0f} MB vs {hand / 1e6:.0f} MB")  # fmt: skip

    def hand_restore(self, manifest: dict[str, object], gtid: str) -> float:
        dest, binlogs = self.work / "hand-data", self.work / "hand-binlogs"
        for d in (dest, binlogs):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        first, pos = str(manifest["end"]).split(":")
        packed = sorted((self.work / "repo").glob("main/logs/*/mysql-bin.*.zst"))
        packed = [p for p in packed if p.name.removesuffix(".zst") >= first]
        files = " ".join(str(binlogs / p.name.removesuffix(".zst")) for p in packed)
        (obj,) = (self.work / "repo").glob(f"main/backups/{manifest['id']}/backup.tar.zst")
        restored = MySQLServer(root=self.root)
        restored.datadir = dest
        began = time.perf_counter()
        self.sh(f"zstd -dc {obj} | tar -x -C {dest}")
        for p in packed:
            self.sh(f"zstd -d -q -f {p} -o {binlogs / p.name.removesuffix('.zst')}")
        restored.start(timeout=300)
        restored.query("RESET BINARY LOGS AND GTIDS")
        restored.query("SET GLOBAL gtid_purged = %s", str(manifest["gtid_state"]))
        client = f"mysql --no-defaults --socket={restored.socket} -uroot --binary-mode"
        self.sh(f"mysqlbinlog --no-defaults --start-position={pos} --include-gtids={gtid} "
                f"{files} | {client}")  # fmt: skip
        elapsed = time.perf_counter() - began
        restored.destroy()
        shutil.rmtree(dest, ignore_errors=True)
        return elapsed

    def pitr_restore(self, gtid: str) -> float:
        dest, port = self.work / "pitr-restore", free_port()
        args = ["restore", "--gtid", gtid, "--to", str(dest), "--port", str(port)]
        elapsed = timed(lambda: self.pitr_run(*args, log="pitr-restore.log"))
        pid = int((dest / "pitr-server.pid").read_text())
        subprocess.run(["kill", "-TERM", str(pid)], check=False)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        shutil.rmtree(dest, ignore_errors=True)
        return elapsed

    def bench_restore(self, binlog_mb: int, rows: int, runs: int) -> Row:
        self.pitr_run("backup", "--quiet")
        manifest = json.loads(self.pitr_run("list", "--json"))["backups"][-1]
        manifest = json.loads(next((self.work / "repo").glob(
            f"main/backups/{manifest['id']}/manifest.json")).read_text())  # fmt: skip
        self.churn(binlog_mb, rows)
        executed = str(self.server.query("SELECT @@GLOBAL.gtid_executed")[0][0])
        uuid, gnos = executed.replace("\n", "").split(":", 1)
        target = f"{uuid}:{gnos.split('-')[-1]}"  # the newest transaction
        self.pitr_run("archive", "--quiet")
        size = sum(p.stat().st_size for p in self.server.binlog_files())
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(self.pitr_restore(target))
            theirs.append(self.hand_restore(manifest, f"{uuid}:{gnos}"))
        return (f"restore + replay of {size / 1e6:.0f} MB of binlog to a GTID",
                statistics.median(ours), statistics.median(theirs), "server up")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-mb", type=int, default=1000)
    parser.add_argument("--binlog-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--show-logs", action="store_true", help="print pitr's log lines")
    parser.add_argument("--backup-only", action="store_true", help="the backup row only")
    args = parser.parse_args()
    bench = Bench(make_base_dir("pitr-bench-mysql-"))
    try:
        bench.setup(args.data_mb)
        load = [os.getloadavg()[0]]
        results = [bench.bench_backup(args.runs)]
        load.append(os.getloadavg()[0])
        if not args.backup_only:
            results.append(bench.bench_restore(args.binlog_mb, args.data_mb * 1_000_000
                                               // ROW_BYTES, args.runs))  # fmt: skip
            load.append(os.getloadavg()[0])
        if args.show_logs:
            for name in ("pitr-backup.log", "pitr-restore.log")[: len(results)]:
                print(f"--- {name}\n{(bench.work / name).read_text()}")
    finally:
        bench.server.destroy()
        cleanup_all()
    print(
        f"\nmedians of {args.runs} interleaved runs; load average (1 min) "
        f"{' / '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} CPUs"
    )
    print(f"\n| {'measure':<52} | {'pitr s':>7} | {'by hand s':>9} | {'ratio':>5} | notes")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 11}|{'-' * 7}|------")
    for what, ours, theirs, notes in results:
        print(f"| {what:<52} | {ours:7.2f} | {theirs:9.2f} | {ours / theirs:5.2f} | {notes}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    main()
