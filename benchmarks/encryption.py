"""What client-side encryption costs: the same work with and without ``encryption = "age"``.

    /opt/pitr/venv/bin/python benchmarks/encryption.py [--size-mb 1024] [--runs 3] [--pushes 41]

1. The transfer pipeline (as ``benchmarks/transfer.py``): a table-like input uploaded into a
   file repository (zstd -3, two threads) and downloaded with verification, plain and
   encrypted to one recipient; ``age -r`` / ``age -d`` on the compressed file for reference.
2. ``pitr wal-push`` as PostgreSQL runs it (a new process per segment, the fast path) on a real
   16 MB segment (tests/vectors/wal/generated), each push into a fresh file repository, plain
   and encrypted back to back, the difference taken within each pair. Goals (issue 13): at
   most +10% on transfer wall time, +5 ms per push.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard
from transfer import MB, make_input

from pitr.crypt import install
from pitr.crypt.age import Identity
from pitr.crypt.keyring import Keyring
from pitr.storage.local import LocalStorage
from pitr.storage.transfer import Compression, StoredObject, download, upload

SEGMENT = Path(__file__).parents[1] / "tests/vectors/wal/generated/000000010000000000000004.zst"
BINDIR = "/usr/lib/postgresql/15/bin"


def transfer_rows(args: argparse.Namespace, work: Path, identity_file: Path) -> list[str]:
    source = work / "input.bin"
    make_input(source, args.size_mb * MB)
    source.read_bytes()
    repo = LocalStorage(str(work / "repo"))
    stored: dict[str, StoredObject] = {}

    def up(name: str, encrypt: bool) -> None:
        with source.open("rb") as fh:
            stored[name] = upload(repo, name, fh, Compression("zstd", 3, 2, encrypt))

    def down(name: str) -> None:
        with (work / "restored.bin").open("wb") as out:
            download(repo, stored[name], out)

    compressed = work / "repo" / "plain.zst"
    public = str(Identity.parse(_secret(identity_file)).recipient())
    contenders: dict[str, Callable[[], object]] = {
        "upload": lambda: up("plain.zst", False),
        "upload+age": lambda: up("sealed.zst.age", True),
        "download": lambda: down("plain.zst"),
        "download+age": lambda: down("sealed.zst.age"),
        "age -r (compressed)": lambda: subprocess.run(
            ["age", "-r", public, "-o", str(work / "c.age"), str(compressed)], check=True),
        "age -d (compressed)": lambda: subprocess.run(
            ["age", "-d", "-i", str(identity_file), "-o", str(work / "c"), str(work / "c.age")],
            check=True),
    }  # fmt: skip
    spent = interleaved(contenders, args.runs)
    size = args.size_mb
    lines = [f"transfer: {size} MB input, {compressed.stat().st_size / MB:.0f} MB stored, "
             f"median of {args.runs} (wall; CPU of pitr and its children)"]  # fmt: skip
    for name, (wall, cpu) in spent.items():
        base = spent.get(name.removesuffix("+age"))
        ratio = (
            f"{wall / base[0]:5.3f}x wall {cpu / base[1]:5.3f}x CPU" if base and "+" in name else ""
        )
        lines.append(f"  {name:22} {wall:7.2f} s {cpu:7.2f} s CPU {size / wall:6.0f} MB/s  {ratio}")
    return lines


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def interleaved(
    contenders: dict[str, Callable[[], object]], runs: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each contender, the contenders taking turns (so that the
    load of a shared machine falls on each alike)."""
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            started, cpu = time.perf_counter(), _cpu()
            fn()
            walls[name].append(time.perf_counter() - started)
            cpus[name].append(_cpu() - cpu)
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in contenders}


def _secret(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("AGE-"))


def push_rows(args: argparse.Namespace, work: Path, public: str) -> list[str]:
    wal = work / "pg_wal" / "000000010000000000000004"
    wal.parent.mkdir()
    with SEGMENT.open("rb") as src, wal.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    pitr = str(Path(sys.executable).parent / "pitr")
    instance = f'[instances.main]\nengine = "postgresql"\ndatadir = "{work}"\nbindir = "{BINDIR}"\n'
    pushes = {}
    for mode in ("plain", "age"):
        config = work / f"{mode}.toml"
        extra = f'encryption = "age"\nrecipients = ["{public}"]\n' if mode == "age" else ""
        config.write_text(f'[repository]\nurl = "file://{work}/repo-{mode}"\n{extra}{instance}')
        argv = [pitr, "--config", str(config), "wal-push", str(wal)]

        def push(argv: list[str] = argv, repo: Path = work / f"repo-{mode}") -> None:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(repo)

        pushes[mode] = push
    walls, cpus = paired(pushes["plain"], pushes["age"], args.pushes)
    own = _encryption_in_a_fresh_process(wal, public, args.pushes)
    return [
        f"wal-push (a new process per 16 MB segment), {args.pushes} pairs taking turns",
        f"  wall: plain {walls[0] * 1000:6.1f} ms  age {walls[1] * 1000:6.1f} ms  "
        f"difference {_quartiles(walls[2])}",
        f"  CPU:  plain {cpus[0] * 1000:6.1f} ms  age {cpus[1] * 1000:6.1f} ms  "
        f"difference {_quartiles(cpus[2])}",
        "  encryption's own share in a fresh process (importing it, the keyring, loading the "
        "library, sealing the compressed segment and an index's summaries): wall median "
        f"{statistics.median(w for w, _ in own):.1f} ms, CPU median "
        f"{statistics.median(c for _, c in own):.1f} ms",
    ]


def paired(
    first: Callable[[], object], second: Callable[[], object], runs: int
) -> tuple[tuple[float, float, list[float]], tuple[float, float, list[float]]]:
    """(wall, CPU), each as (median of ``first``, median of ``second``, the differences of
    each pair): on a shared machine the difference within a pair, run back to back, is far
    steadier than the difference of the medians."""
    samples: list[tuple[float, float]] = []
    for _ in range(runs):
        for fn in (first, second):
            started, cpu = time.perf_counter(), _cpu()
            fn()
            samples.append((time.perf_counter() - started, _cpu() - cpu))
    out = []
    for k in (0, 1):
        a, b = [s[k] for s in samples[0::2]], [s[k] for s in samples[1::2]]
        differences = [y - x for x, y in zip(a, b, strict=True)]
        out.append((statistics.median(a), statistics.median(b), differences))
    return out[0], out[1]


def _quartiles(differences: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(differences, n=4)
    return f"median {median * 1000:+.1f} ms (quartiles {q1 * 1000:+.1f}, {q3 * 1000:+.1f})"


#: What ``wal-push`` does more when it encrypts, in a fresh interpreter that has imported what
#: the fast path imports anyway: the crypt modules and the keyring, one age stream of the
#: compressed segment (the primitives' library loaded for it), and the sealed summaries of
#: its index document.
_OWN_SHARE = """
import io, json, sys, time, zstandard, hashlib, hmac
import pitr.config.settings, pitr.storage.transfer, pitr.catalog.store
import pitr.engines.postgresql.archive
data = zstandard.ZstdCompressor(level=3).compress(open(sys.argv[1], "rb").read())
summaries = {"summaries": [f"INSERT INTO t{i} (1 row)" for i in range(20)]}
started, cpu = time.perf_counter(), time.process_time()
from pitr import crypt
from pitr.crypt.age import Recipient
from pitr.crypt.keyring import Keyring
crypt.install(Keyring((Recipient.parse(sys.argv[2]),)))
stream = crypt.installed().encrypt(io.BytesIO(data))
while stream.read(1 << 20):
    pass
import pitr.catalog.sealing
crypt.installed().seal(summaries)
print((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000)
"""


def _encryption_in_a_fresh_process(wal: Path, public: str, runs: int) -> list[tuple[float, float]]:
    """Wall and CPU milliseconds, one pair per run (run away from a source tree, whose modules
    ``-c`` would import, and compile, instead of the installed ones)."""
    found = []
    for _ in range(runs):
        argv = [sys.executable, "-c", _OWN_SHARE, str(wal), public]
        done = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=wal.parent)
        out = done.stdout.split()
        found.append((float(out[0]), float(out[1])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=41)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pitr-bench-age-", dir=args.dir))
    try:
        identity_file = work / "identity.txt"
        subprocess.run(["age-keygen", "-o", str(identity_file)], check=True,
                       capture_output=True)  # fmt: skip
        identity = Identity.parse(_secret(identity_file))
        install(Keyring((identity.recipient(),), str(identity_file)))
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print("\n".join(push_rows(args, work, str(identity.recipient()))))
        print("\n".join(transfer_rows(args, work, identity_file)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
