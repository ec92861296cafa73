"""Transfer throughput: pitr's upload pipeline vs `zstd -3 -T2` and a plain copy, same input.

    /opt/pitr/venv/bin/python benchmarks/transfer.py [--size-mb 1024] [--runs 3] [--dir /tmp]

The input is generated once (table-like text with random numbers, ~4:1 with zstd -3) and is
read from the page cache by every contender. Throughput is input MB per second of wall time;
the ratio column compares with `zstd -3 -T2 INPUT -o OUTPUT` (the compression limit of a 2-core
machine). Goal: pitr into a file repository >= 0.9x zstd. With ``--age`` the pitr rows are
also run encrypting to a new identity (``encryption = "age"``), each right after its plain run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pitr.crypt import install
from pitr.crypt.age import Identity
from pitr.crypt.keyring import Keyring
from pitr.storage.local import LocalStorage
from pitr.storage.transfer import Compression, download, upload

MB = 1024 * 1024


def make_input(path: Path, size: int) -> None:
    rng = random.Random(42)
    words = [f"customer-{i:05d}" for i in range(5000)]
    with path.open("wb") as out:
        written = 0
        while written < size:
            rows = [
                f"{rng.randrange(10**9)}\t{rng.choice(words)}\t{rng.random():.6f}\t"
                f"2026-11-{rng.randrange(1, 29):02d}\t{'x' * rng.randrange(0, 40)}\n"
                for _ in range(20000)
            ]
            block = "".join(rows).encode()
            out.write(block)
            written += len(block)
        out.truncate(size)


def timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        subprocess.run(["sync"], check=True)
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def both(
    fn: Callable[[bool], None], age: bool, times: dict[bool, list[float]]
) -> Callable[[], None]:
    """``fn`` plain, then (``age``) encrypting, each timed into ``times``: interleaved runs."""

    def run() -> None:
        for encrypt in (False, True) if age else (False,):
            started = time.perf_counter()
            fn(encrypt)
            times[encrypt].append(time.perf_counter() - started)

    return run


def run_zstd(args: argparse.Namespace, source: Path, dest: Path) -> None:
    argv = ["zstd", "-q", "-f", f"-{args.level}", f"-T{args.threads}", str(source), "-o", str(dest)]
    subprocess.run(argv, check=True)


def run_unzstd(source: Path, dest: Path) -> None:
    subprocess.run(["zstd", "-q", "-f", "-d", str(source), "-o", str(dest)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--age", action="store_true", help="also encrypting (age)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pitr-bench-", dir=args.dir))
    try:
        source = work / "input.bin"
        size = args.size_mb * MB
        make_input(source, size)
        source.read_bytes()  # warm the page cache
        repo = LocalStorage(str(work / "repo"))
        identity = Identity.generate()
        (work / "identity.txt").write_text(f"{identity}\n")
        install(Keyring((identity.recipient(),), str(work / "identity.txt")))
        stored = {}

        def pitr_upload(encrypt: bool = False) -> None:
            compression = Compression("zstd", args.level, args.threads, encrypt)
            with source.open("rb") as fh:
                stored[encrypt] = upload(repo, f"bench/input{compression.suffix}", fh, compression)

        def pitr_download(encrypt: bool = False) -> None:
            with (work / "restored.bin").open("wb") as out:
                download(repo, stored[encrypt], out)

        up: dict[bool, list[float]] = {False: [], True: []}
        down: dict[bool, list[float]] = {False: [], True: []}

        zstd_c = f"zstd -{args.level} -T{args.threads}"
        zstd_d = "zstd -d"
        rows = [  # contender, seconds, compared with
            (zstd_c, timed(lambda: run_zstd(args, source, work / "out.zst"), args.runs), zstd_c),
            (
                "plain copy (cp)",
                timed(lambda: shutil.copyfile(source, work / "c"), args.runs),
                zstd_c,
            ),
            ("pitr upload (file repo)", timed(both(pitr_upload, args.age, up), args.runs), zstd_c),
            (zstd_d, timed(lambda: run_unzstd(work / "out.zst", work / "d"), args.runs), zstd_d),
            (
                "pitr download + verify",
                timed(both(pitr_download, args.age, down), args.runs),
                zstd_d,
            ),
        ]
        if args.age:  # each run timed the plain and the encrypted contender in turn
            rows[2] = (rows[2][0], statistics.median(up[False]), zstd_c)
            rows[4] = (rows[4][0], statistics.median(down[False]), zstd_d)
            rows.insert(3, ("pitr upload, age", statistics.median(up[True]), zstd_c))
            rows.append(("pitr download + verify, age", statistics.median(down[True]), zstd_d))
        seconds = {name: secs for name, secs, _ in rows}
        zstd_size = (work / "out.zst").stat().st_size
        print(f"input: {args.size_mb} MB, {os.cpu_count()} CPUs, median of {args.runs} runs")
        print(f"compressed: pitr {stored[False].size / MB:.1f} MB, zstd {zstd_size / MB:.1f} MB")
        print(f"{'contender':26} {'seconds':>8} {'MB/s':>7} {'ratio':>12}")
        for name, secs, base in rows:
            ratio = seconds[base] / secs
            print(f"{name:26} {secs:8.2f} {size / MB / secs:7.0f} {ratio:5.2f}x {base}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
