"""pitr against the same work done by hand on a throwaway MariaDB (the host's 10.11, or with
``--root`` the 11.8 of the test suite's Debian trixie root), side by side:

1. full backup of ~1.5 GB: ``pitr backup --type full`` (into a file repository) vs
   ``mariadb-backup --backup --stream=xbstream | zstd -3 -T2 > file``;
2. restore including ~200 MB of binlog replay: ``pitr restore --latest --to DIR --port N``
   vs by hand ``zstd -dc | mbstream -x``, ``mariadb-backup --prepare``, ``mariadbd`` started,
   ``zstd -d`` of the archived binlogs, ``SET GLOBAL gtid_binlog_state``,
   ``mariadb-binlog --start-position FILES | mariadb``;
3. binlog indexing vs ``mariadb-binlog FILE > /dev/null`` (benchmarks/binlog_index.py): on the
   replayed binlogs (large row events) and on ~60 MB of small row events.

    python benchmarks/mariadb.py                   # ~1.5 GB of data, ~200 MB of binlog
    python benchmarks/mariadb.py --data-mb 300 --binlog-mb 50 --runs 1   # a quick look

    python benchmarks/mariadb.py --root            # MariaDB 11.8, as the tests start it

With ``--root`` the server, the by-hand tools and pitr (the root's virtualenv, see
``tests/servers/roots.py``) all run inside the root, each command entering it.
Runs as root on 127.0.0.1 (free ports, private sockets) in a directory under /tmp that is
removed afterwards (``--keep`` keeps it). pitr and the by-hand steps interleaved, the median of
``--runs`` runs each (the binlog indexing rows: the best), with the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import binlog_index  # noqa: E402

from pitr.engines.mysql.binlog import index_binlog_file  # noqa: E402

PITR = Path(sys.executable).parent / "pitr"
#: the Debian root the server and its tools run in (--root), None: the host's
ROOT: list[Path] = []


def here(argv: list[str]) -> list[str]:
    """``argv`` where the server's programs are (the host, or the root)."""
    if not ROOT:
        return argv
    from servers.roots import in_root

    return in_root(ROOT[0], argv)


ROW_BYTES = 1024  # payload per row of the data table


def free_port() -> int:
    return binlog_index._free_port()


class Server:
    """A throwaway mariadbd (binary log in its own directory)."""

    def __init__(self, base: Path, datadir: Path | None = None, init: bool = True) -> None:
        self.base = base
        self.datadir = datadir or base / "data"
        self.binlogs = base / "binlog"
        self.socket = base / "s.sock"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binlogs.mkdir(parents=True, exist_ok=True)
        if init:
            subprocess.run(here(["mariadb-install-db", "--no-defaults",
                                 f"--datadir={self.datadir}", "--user=root",
                                 "--auth-root-authentication-method=normal", "--skip-test-db"]),
                           check=True, capture_output=True)  # fmt: skip

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            here(["mariadbd", "--no-defaults", "--user=root", f"--datadir={self.datadir}",
             f"--socket={self.socket}", f"--pid-file={self.base / 'pid'}",
             f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--log-bin={self.binlogs / 'mysql-bin'}", "--server-id=1", "--binlog-format=ROW",
             f"--log-error={self.base / 'error.log'}", *extra]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        for _ in range(600):
            if self.sql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"mariadbd did not start: see {self.base / 'error.log'}")

    def client(self) -> list[str]:
        return ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot"]

    def sql(self, query: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(here([*self.client(), "-N", "-e", query]), check=check,
                              capture_output=True, text=True)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(300)
        self.proc = None


Row = tuple[str, float, float, str]


def run(argv: list[str], log: Path | None = None) -> None:
    """``argv``; with ``log``, its standard error (pitr's log lines) is kept there."""
    if log is None:
        subprocess.run(argv, check=True)
        return
    with log.open("w") as err:
        subprocess.run(argv, check=True, stderr=err)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sh(command: str) -> None:
    subprocess.run(here(["/bin/sh", "-c", command]), check=True, stderr=subprocess.DEVNULL)


def load(server: Server, data_mb: int) -> None:
    rows = data_mb * 1_000_000 // ROW_BYTES
    print(f"loading ~{data_mb} MB ({rows} rows of {ROW_BYTES} bytes), binlog off...", flush=True)
    server.sql("CREATE DATABASE bench; CREATE TABLE bench.big (id INT PRIMARY KEY, "
               "k INT NOT NULL, pad VARCHAR(1100)) ENGINE=InnoDB")  # fmt: skip
    step = 100_000
    for first in range(1, rows + 1, step):
        last = min(rows, first + step - 1)
        server.sql(
            "SET sql_log_bin = 0; INSERT INTO bench.big SELECT seq, seq % 1000, CONCAT("
            + ", ".join(f"SHA2(seq + {k}000000000, 512)" for k in range(7))
            + ", REPEAT('x', 100)) "
            f"FROM bench.seq_{first}_to_{last}"
        )


def churn(server: Server, binlog_mb: int, rows: int) -> None:
    """~``binlog_mb`` MB of binlog: UPDATEs of 1000 rows per transaction (full row images)."""
    per_row = 2 * (ROW_BYTES + 40)
    count = binlog_mb * 1_000_000 // per_row
    print(f"writing ~{binlog_mb} MB of binlog ({count} row updates)...", flush=True)
    first = 1
    while count > 0:
        n = min(1000, count)
        last = min(rows, first + n - 1)
        server.sql(f"UPDATE bench.big SET k = k + 1, pad = CONCAT('u', SUBSTRING(pad, 2)) "
                   f"WHERE id BETWEEN {first} AND {last}")  # fmt: skip
        count -= last - first + 1
        first = last + 1 if last < rows else 1
    server.sql("FLUSH BINARY LOGS")


def by_hand_restore(work: Path, xbstream: Path, server: Server, start: str, gtid: str) -> float:
    """The documented steps, one after the other, from the same archive pitr uses: the
    binlogs are decompressed from the repository's copies, then replayed."""
    dest, binlogs = work / "hand-restore", work / "hand-binlogs"
    for d in (dest, binlogs):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    first_name, pos = start.split(":")
    archived = sorted((work / "repo").glob("main/logs/*/mysql-bin.*.zst"), key=lambda p: p.name)
    names = [p.name.removesuffix(".zst") for p in archived]
    archived = archived[names.index(first_name) :]
    files = [binlogs / p.name.removesuffix(".zst") for p in archived]
    restored = Server(work / "hand-server", datadir=dest, init=False)
    began = time.perf_counter()
    sh(f"zstd -dc {xbstream} | mbstream -x -C {dest}")
    sh(f"mariadb-backup --no-defaults --prepare --target-dir={dest} >/dev/null 2>&1")
    for packed, plain in zip(archived, files, strict=True):
        sh(f"zstd -d -q -f {packed} -o {plain}")
    restored.start()
    restored.sql(f"SET GLOBAL gtid_binlog_state = '{gtid}'")
    sh(f"mariadb-binlog --no-defaults --start-position={pos} "
       f"{' '.join(map(str, files))} | {' '.join(restored.client())} --binary-mode")  # fmt: skip
    elapsed = time.perf_counter() - began
    restored.stop()
    for d in (dest, binlogs, restored.base):
        shutil.rmtree(d, ignore_errors=True)
    return elapsed


def config_for(work: Path, server: Server) -> list[str]:
    config = work / "pitr.toml"
    config.write_text(
        f'lock_dir = "{work / "locks"}"\nspool_dir = "{work / "spool"}"\n\n'
        f'[repository]\nurl = "file://{work / "repo"}"\n\n[instances.main]\n'
        f'engine = "mariadb"\ndatadir = "{server.datadir}"\nsocket = "{server.socket}"\n'
        'user = "root"\n'
    )
    if not ROOT:
        return [str(PITR), "--config", str(config)]
    from servers.roots import install_pitr

    return here([install_pitr(ROOT[0]), "--config", str(config)])


def hand_backup(work: Path, server: Server, out: Path, lsndir: bool = False) -> None:
    """``mariadb-backup --stream=xbstream | zstd -3 -T2``, and ``sync`` (pitr's backup is on
    disk, not in the page cache, when it returns: so is this one)."""
    extra = f"--extra-lsndir={work / 'lsn'} " if lsndir else ""
    sh(f"mariadb-backup --no-defaults --socket={server.socket} --user=root --backup "
       f"--stream=xbstream --target-dir={work / 'tgt'} {extra}2>/dev/null "
       f"| zstd -3 -T2 -q -f -o {out} && sync {out}")  # fmt: skip


def settle(server: Server) -> None:
    """Wait until InnoDB has written every page the load dirtied: the first backup timed
    would otherwise compete with that flushing (pitr's, which runs first)."""
    server.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
    for _ in range(1200):
        dirty = server.sql("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'").stdout
        if int(dirty.split()[-1]) == 0:
            return
        time.sleep(0.1)


def bench_backup(work: Path, server: Server, pitr: list[str], runs: int) -> Row:
    hand = work / "hand.xbstream.zst"
    settle(server)
    data_bytes = sum(p.stat().st_size for p in server.datadir.rglob("*") if p.is_file())
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(timed(lambda: run([*pitr, "backup", "--type", "full"],
                                      log=work / "pitr-backup.log")))  # fmt: skip
        theirs.append(timed(lambda: hand_backup(work, server, hand)))
    stored = sum(p.stat().st_size for p in (work / "repo").rglob("backup.xbstream.zst")) / runs
    return (f"full backup ({data_bytes / 1e9:.2f} GB datadir)", median(ours), median(theirs),
            f"stored {stored / 1e6:.0f} MB vs {hand.stat().st_size / 1e6:.0f} MB")  # fmt: skip


def pitr_restore(pitr: list[str], dest: Path, port: int) -> float:
    """Restore beside to --latest (server left running); stop it afterwards, untimed."""
    elapsed = timed(lambda: run([*pitr, "restore", "--latest", "--to", str(dest), "--port",
                                 str(port), "--quiet"]))  # fmt: skip
    pid = int((dest / "pitr-server.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def bench_restore(work: Path, server: Server, pitr: list[str], args: Any) -> Row:
    hand = work / "hand.xbstream.zst"
    run([*pitr, "backup", "--type", "full", "--quiet"])  # the two copies: the same moment
    hand_backup(work, server, hand, lsndir=True)
    pos = binlog_index_pos((work / "lsn" / "xtrabackup_info").read_text())
    churn(server, args.binlog_mb, args.data_mb * 1_000_000 // ROW_BYTES)
    run([*pitr, "archive", "--quiet"])
    binlog_bytes = sum(f.stat().st_size for f in server.binlogs.glob("mysql-bin.0*"))
    ours, theirs = [], []
    for n in range(args.runs):
        ours.append(pitr_restore(pitr, work / f"pitr-restore-{n}", free_port()))
        theirs.append(by_hand_restore(work, hand, server, pos[0], pos[1]))
    return (f"restore + replay of {binlog_bytes / 1e6:.0f} MB of binlog", median(ours),
            median(theirs), "to --latest, server up")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-mb", type=int, default=1500)
    parser.add_argument("--binlog-mb", type=int, default=200)
    parser.add_argument("--small-mb", type=int, default=60, help="small-event binlog size")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--root", action="store_true", help="MariaDB 11.8 in the test root")
    parser.add_argument("--backup-only", action="store_true", help="the backup row only")
    parser.add_argument("--show-logs", action="store_true", help="pitr's log of its last backup")
    args = parser.parse_args()
    if args.root:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from servers.roots import MARIADB_ROOT, ensure_root

        ROOT.append(ensure_root(MARIADB_ROOT))
    work = Path(tempfile.mkdtemp(prefix="pitr-bench-my-", dir="/tmp"))
    server = Server(work / "instance")
    results: list[Row] = []
    try:
        server.start("--innodb-buffer-pool-size=512M", "--innodb-log-file-size=256M",
                     "--innodb-flush-log-at-trx-commit=2", "--max-binlog-size=64M")  # fmt: skip
        load(server, args.data_mb)
        pitr = config_for(work, server)
        results.append(bench_backup(work, server, pitr, args.runs))
        if args.show_logs:
            print((work / "pitr-backup.log").read_text())
        if args.backup_only:
            return report(results)
        results.append(bench_restore(work, server, pitr, args))
        big = max(server.binlogs.glob("mysql-bin.0*"), key=lambda p: p.stat().st_size)
        results.append(index_row(big, "binlog index, large row events", args.runs))
        (work / "small").mkdir()
        small = binlog_index.generate(args.small_mb, work / "small")
        results.append(index_row(small, "binlog index, small row events", args.runs))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results)


def report(results: list[Row]) -> None:
    version = subprocess.run(here(["mariadbd", "--version"]), capture_output=True, text=True,
                             check=False)  # fmt: skip
    print(f"\n{version.stdout.strip()}")
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"| {'measure':<46} | {'pitr s':>7} | {'by hand s':>9} | {'ratio':>5} | notes")
    print(f"|{'-' * 48}|{'-' * 9}|{'-' * 11}|{'-' * 7}|------")
    for what, ours, theirs, notes in results:
        print(f"| {what:<46} | {ours:7.2f} | {theirs:9.2f} | {ours / theirs:5.2f} | {notes}")


def binlog_index_pos(info: str) -> tuple[str, str]:
    from pitr.engines.mysql.xtrainfo import parse_info_binlog_pos

    pos = parse_info_binlog_pos(info)
    assert pos is not None
    return pos.text, pos.gtids


def index_row(path: Path, what: str, runs: int) -> tuple[str, float, float, str]:
    size = path.stat().st_size
    ours = binlog_index.best_of(runs, lambda: index_binlog_file(path))
    with open(os.devnull, "wb") as null:
        argv = here(["mariadb-binlog", "--no-defaults", str(path)])
        theirs = binlog_index.best_of(runs, lambda: subprocess.run(argv, stdout=null, check=True))
    return (f"{what} ({size / 1e6:.0f} MB)", ours, theirs, "vs mariadb-binlog > /dev/null")


if __name__ == "__main__":
    main()
