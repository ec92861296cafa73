"""Time pitr's binlog indexer against ``mariadb-binlog FILE > /dev/null`` on the same file.

    python benchmarks/binlog_index.py                  # generate ~60 MB with a throwaway server
    python benchmarks/binlog_index.py --size-mb 100
    python benchmarks/binlog_index.py --binlog PATH    # use an existing binlog
    python benchmarks/binlog_index.py --keep FILE      # also keep the generated binlog there
    python benchmarks/binlog_index.py --profile        # also print a cProfile of the indexer

Generating needs a MariaDB server installed (mariadb-install-db, mariadbd, mariadb-binlog); it
runs as root on 127.0.0.1 with a free port and a private socket, and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pitr.engines.mysql.binlog import index_binlog_file

WORKLOAD = """
CREATE DATABASE bench;
USE bench;
CREATE TABLE t (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(20), pad VARCHAR(40)) ENGINE=InnoDB;
DELIMITER //
CREATE PROCEDURE fill(n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < n DO
    INSERT INTO t VALUES (i, i % 1000, 'c', CONCAT('pad-', i));
    IF i % 10 = 9 THEN
      START TRANSACTION;
      UPDATE t SET k = k + 1 WHERE id = i - 5;
      DELETE FROM t WHERE id = i - 9;
      COMMIT;
    END IF;
    SET i = i + 1;
  END WHILE;
END//
DELIMITER ;
"""
BYTES_PER_ROW = 370  # measured: ~370 bytes of binlog per loop iteration above


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate(size_mb: int, work: Path) -> Path:
    """Write a binlog of about ``size_mb`` MB of small row events; return its path."""
    data, logs, sock = work / "d", work / "b", work / "s"
    logs.mkdir()
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
         f"--pid-file={work / 'p'}", f"--port={_free_port()}", "--bind-address=127.0.0.1",
         f"--log-bin={logs / 'mysql-bin'}", "--server-id=1", "--binlog-format=ROW",
         "--max-binlog-size=1G", "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot"]
    try:
        for _ in range(100):
            ping = subprocess.run([*client, "-e", "SELECT 1"], check=False, capture_output=True)
            if ping.returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([*client, "-e", "FLUSH BINARY LOGS"], check=True)
        subprocess.run(client, input=WORKLOAD.encode(), check=True)
        rows = size_mb * 1_000_000 // BYTES_PER_ROW
        print(f"generating ~{size_mb} MB of binlog ({rows} loop iterations)...", flush=True)
        subprocess.run([*client, "bench", "-e", f"CALL fill({rows}); FLUSH BINARY LOGS"],
                       check=True)  # fmt: skip
    finally:
        subprocess.run([*client, "-e", "SHUTDOWN"], check=False, capture_output=True)
        server.wait(timeout=120)
    return max(logs.glob("mysql-bin.0*"), key=lambda p: p.stat().st_size)


def best_of(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binlog", type=Path, help="index this file instead of generating one")
    parser.add_argument("--size-mb", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the generated binlog to this path")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pitr-bench-", dir="/tmp"))
    try:
        path = args.binlog or generate(args.size_mb, work)
        if args.keep and not args.binlog:
            path = Path(shutil.copyfile(path, args.keep))
        size = path.stat().st_size
        index = index_binlog_file(path)
        print(f"{path.name}: {size / 1e6:.1f} MB, {index.event_count} events, "
              f"{len(index.transactions)} transactions")  # fmt: skip
        ours = best_of(args.runs, lambda: index_binlog_file(path))
        with open(os.devnull, "wb") as null:
            theirs = best_of(
                args.runs, lambda: subprocess.run(["mariadb-binlog", str(path)], stdout=null,
                                                  check=True)
            )  # fmt: skip
        print(f"index_binlog_file:          {ours:7.2f} s  ({size / 1e6 / ours:6.1f} MB/s)")
        print(f"mariadb-binlog > /dev/null: {theirs:7.2f} s  ({size / 1e6 / theirs:6.1f} MB/s)")
        print(f"ratio (pitr / mariadb-binlog): {ours / theirs:.2f}")
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(index_binlog_file, path)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
