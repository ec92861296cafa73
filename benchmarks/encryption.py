"""What client-side encryption costs: the same work with and without ``encryption = "age"``.

    /opt/pitr/venv/bin/python benchmarks/encryption.py [--size-mb 1024] [--runs 3] [--pushes 15]

1. The transfer pipeline (as ``benchmarks/transfer.py``): a table-like input uploaded into a
   file repository (zstd -3, two threads) and downloaded with verification, plain and
   encrypted to one recipient; ``age -r`` / ``age -d`` on the compressed file for reference.
2. ``pitr wal-push`` as PostgreSQL runs it (a new process per segment, the fast path) on a real
   16 MB segment (tests/vectors/wal/generated), each push into a fresh file repository, plain
   and encrypted. Goals (issue 13): at most +10% on transfer wall time, +5 ms per push.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from transfer import MB, make_input, timed

from pitr.crypt import install
from pitr.crypt.age import Identity
from pitr.crypt.keyring import Keyring
from pitr.storage.local import LocalStorage
from pitr.transfer import Compression, StoredObject, download, upload

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

    seconds = {
        "upload": timed(lambda: up("plain.zst", False), args.runs),
        "upload+age": timed(lambda: up("sealed.zst.age", True), args.runs),
        "download": timed(lambda: down("plain.zst"), args.runs),
        "download+age": timed(lambda: down("sealed.zst.age"), args.runs),
    }
    compressed = work / "repo" / "plain.zst"
    public = str(Identity.parse(_secret(identity_file)).recipient())
    seconds["age -r (compressed)"] = timed(
        lambda: subprocess.run(["age", "-r", public, "-o", str(work / "c.age"), str(compressed)],
                               check=True), args.runs)  # fmt: skip
    seconds["age -d (compressed)"] = timed(
        lambda: subprocess.run(["age", "-d", "-i", str(identity_file), "-o", str(work / "c"),
                                str(work / "c.age")], check=True), args.runs)  # fmt: skip
    size = args.size_mb
    lines = [f"transfer: {size} MB input, {compressed.stat().st_size / MB:.0f} MB stored, "
             f"median of {args.runs}"]  # fmt: skip
    for name, secs in seconds.items():
        base = seconds.get(name.removesuffix("+age"))
        ratio = f"{secs / base:5.3f}x" if base and name.endswith("+age") else ""
        lines.append(f"  {name:22} {secs:7.2f} s {size / secs:7.0f} MB/s  {ratio}")
    return lines


def _secret(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("AGE-"))


def push_rows(args: argparse.Namespace, work: Path, public: str) -> list[str]:
    wal = work / "pg_wal" / "000000010000000000000004"
    wal.parent.mkdir()
    with SEGMENT.open("rb") as src, wal.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    pitr = str(Path(sys.executable).parent / "pitr")
    times: dict[str, list[float]] = {"plain": [], "age": []}
    instance = f'[instances.main]\nengine = "postgresql"\ndatadir = "{work}"\nbindir = "{BINDIR}"\n'
    for n in range(args.pushes):
        for mode, spent in times.items():
            repo = work / f"repo-{mode}-{n}"
            config = work / f"{mode}.toml"
            extra = f'encryption = "age"\nrecipients = ["{public}"]\n' if mode == "age" else ""
            config.write_text(f'[repository]\nurl = "file://{repo}"\n{extra}{instance}')
            started = time.perf_counter()
            subprocess.run([pitr, "--config", str(config), "wal-push", str(wal)],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            spent.append(time.perf_counter() - started)
            shutil.rmtree(repo)
    plain, sealed = (statistics.median(times[m]) * 1000 for m in ("plain", "age"))
    own = _encryption_in_a_fresh_process(wal, public, args.pushes)
    return [
        f"wal-push (new process per 16 MB segment), median of {args.pushes}",
        f"  plain {plain:7.1f} ms   age {sealed:7.1f} ms   difference {sealed - plain:+6.1f} ms",
        f"  encryption's own share in a fresh process (imports, keys, sealing the compressed "
        f"segment): median {statistics.median(own):.1f} ms, min {min(own):.1f} ms",
    ]


#: What ``wal-push`` does more when it encrypts, in a fresh interpreter that has imported what
#: the fast path imports anyway: the crypt modules (and ctypes), the key, one age stream.
_OWN_SHARE = """
import io, sys, time, zstandard, hashlib, hmac
import pitr.config, pitr.transfer, pitr.catalog.store
data = zstandard.ZstdCompressor(level=3).compress(open(sys.argv[1], "rb").read())
started = time.perf_counter()
from pitr.crypt.age import Recipient, encrypting
stream = encrypting(io.BytesIO(data), [Recipient.parse(sys.argv[2])])
while stream.read(1 << 20):
    pass
print((time.perf_counter() - started) * 1000)
"""


def _encryption_in_a_fresh_process(wal: Path, public: str, runs: int) -> list[float]:
    return [
        float(subprocess.run([sys.executable, "-c", _OWN_SHARE, str(wal), public], check=True,
                             capture_output=True, text=True).stdout)
        for _ in range(runs)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=15)
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
