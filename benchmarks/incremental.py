"""pitr's block-level incrementals vs pgBackRest's block incremental, same data, one run.

    /work/main/.venv/bin/python benchmarks/incremental.py [--scale 100] [--workdir DIR]

The set-up of ``benchmarks/postgresql.py`` (one throwaway PostgreSQL 15 cluster archiving
into both repositories, zstd level 3 and 2 processes for both, run as root or ``postgres``),
with pgBackRest's ``repo1-bundle=y`` and ``repo1-block=y`` (a beta feature in 2.45:
``beta=y``). After ``pgbench -i -s SCALE``:

1. a full backup with each tool (wall time, size on disk);
2. hot set: ``--load`` s of ``pgbench -c 2`` with a script updating only accounts among the
   first 5 % of ``aid``; the pages whose LSN moved since the full's start are counted (a scan
   of the relation files after a CHECKPOINT, as root) and compressed with zstd level 3 together
   (the reference size); then an incremental with each tool. Goals: pitr's stored bytes ≤ 10 %
   of its full's, its wall time ≤ 0.5× its full's;
3. uniform: ``--load`` s of plain ``pgbench -c 2``; the same count and reference since the
   first incremental's start; an incremental with each tool. Goal: pitr stores ≤ 1.2× the
   reference, and never more than a file-level differential (pitr's differential taken
   afterwards, which covers both loads, is reported beside it);
4. restore + replay until promoted: from full + both incrementals to a time just after the
   second, and from a full taken right after it (alone) to a time just after that one, each
   ``--restore-runs`` times, alternating (medians; the "pgBackRest" column of that row is pitr
   from the full alone). Goal: the chain ≤ 1.1× the full alone. Every copy is checked against
   the original.

The speed of the page LSN scan itself (``pagemap.changed_blocks`` over every relation file,
from the page cache) is reported too. The machine's load average is printed before each
measurement; on a shared machine the times are indicative only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import postgresql as base
import zstandard

from pitr.engines.postgresql.pagemap import changed_blocks, is_relation

BLOCK = 8192
MB = base.MB


class IncrementalBench(base.Bench):
    def write_configs(self) -> None:
        super().write_configs()
        text = self.pgbr_conf.read_text()
        self.write(
            self.pgbr_conf,
            text.replace("[global]\n", "[global]\nrepo1-bundle=y\nrepo1-block=y\nbeta=y\n", 1),
        )

    def moved_pages(self, since: int) -> tuple[int, int, int, float]:
        """Pages of the relation files whose LSN is at or after ``since`` (after a CHECKPOINT):
        how many, their size compressed together (zstd level 3), all pages, and the seconds
        spent in ``changed_blocks``."""
        self.sql("CHECKPOINT")
        compressor = zstandard.ZstdCompressor(level=3).compressobj()
        moved = total = compressed = 0
        scanned = 0.0  # in changed_blocks only: not reading, not compressing
        for top, _dirs, files in os.walk(self.data / "base"):
            for name in files:
                rel = os.path.relpath(os.path.join(top, name), self.data)
                if not is_relation(rel):
                    continue
                with open(os.path.join(top, name), "rb") as fh:
                    at = 0
                    while chunk := fh.read(4 << 20):
                        pages = len(chunk) // BLOCK
                        clock = time.perf_counter()
                        found = list(changed_blocks(chunk, at, since, 1 << 62, BLOCK))
                        scanned += time.perf_counter() - clock
                        for b in found:
                            n = b - at
                            page = chunk[n * BLOCK : (n + 1) * BLOCK]
                            if page[:8] != bytes(8):  # a moved LSN, not an empty page
                                moved += 1
                                compressed += len(compressor.compress(page))
                        total += pages
                        at += pages
        compressed += len(compressor.flush())
        return moved, compressed, total, scanned

    def start_lsn(self, backup_id: str) -> int:
        doc = json.loads(self.run(self.pitr("list", "--json")).stdout)
        found = next(b for b in doc["backups"] if b["id"] == backup_id)
        high, low = str(found["start_position"]).split("/")
        return (int(high, 16) << 32) | int(low, 16)

    def one_backup(self, tool: str, kind: str) -> tuple[float, int, str]:
        self.quiet(f"{kind} backup, {tool}")
        if tool == "pitr":
            seconds, _cpu, ident = self.pitr_backup(kind)
            size = base.disk_bytes(self.pitr_backup_dir(ident))
        else:
            seconds, _cpu, ident = self.pgbr_backup(kind)
            size = base.disk_bytes(self.pgbr_backup_dir(ident))
        base.say(f"  {tool} {kind} {ident}: {seconds:.2f} s, {size / MB:.1f} MB")
        return seconds, size, ident

    def phase(self, name: str, script: Sequence[str], since: int) -> dict[str, Any]:
        base.say(f"{name}: pgbench -c 2 -T {self.args.load} {' '.join(script)}")
        out = self.finish(
            self.pgbench("-c", "2", "-j", "2", "-T", str(self.args.load), *script), name
        )
        tps = next((ln for ln in out.splitlines() if ln.startswith("tps")), "tps ?")
        self.sync_archive()
        moved, reference, total, scan = self.moved_pages(since)
        base.say(
            f"  {tps}; {moved} of {total} pages moved, {reference / MB:.1f} MB compressed; "
            f"scan {scan:.2f} s"
        )
        self.results.notes.append(
            f"{name}: {tps.strip()}; {moved} of {total} relation pages moved "
            f"({moved * BLOCK / MB:.0f} MB raw, {reference / MB:.1f} MB zstd-3); "
            f"page LSNs of {total * BLOCK / MB:.0f} MB checked in {scan:.2f} s "
            f"({total * BLOCK / MB / max(scan, 1e-9):.0f} MB/s, reads not counted)"
        )
        p_time, p_size, p_id = self.one_backup("pitr", "incr")
        g_time, g_size, _ = self.one_backup("pgbr", "incr")
        self.results.add(f"{name}: incremental wall time", p_time, g_time, "s")
        self.results.add(f"{name}: incremental size on disk", p_size / MB, g_size / MB, "MB", 1)
        return {"time": p_time, "size": p_size, "reference": reference, "id": p_id}

    def marked_time(self) -> datetime:
        time.sleep(0.01)
        moment: datetime = self.sql("SELECT clock_timestamp()")[0][0]
        time.sleep(0.01)
        self.sql(f"CREATE TABLE marker_{int(time.time() * 1000)} AS SELECT 1 AS done")
        return moment

    def restore_to(self, target: datetime, label: str, expected: tuple[int, int]) -> float:
        dest = self.work / "restore" / label
        port = base.free_port()
        self.quiet(f"restore, {label}")
        phases = self.restore_pitr(target, dest, port)
        got = self.fingerprint(port)
        if got != expected:
            raise RuntimeError(f"{label}: restored {got}, expected {expected}")
        self.stop(dest, "immediate")
        self.started.remove(dest)
        shutil.rmtree(dest)
        base.say(f"  {label}: {phases['total']:.2f} s (base {phases['base']:.2f} s)")
        return phases["total"]

    def main(self) -> None:
        args = self.args
        self.load_database()

        p_full, p_full_size, full_id = self.one_backup("pitr", "full")
        g_full, g_full_size, _ = self.one_backup("pgbr", "full")
        self.results.add("full backup: wall time", p_full, g_full, "s")
        self.results.add("full backup: size on disk", p_full_size / MB, g_full_size / MB, "MB", 1)

        script = self.work / "hot.sql"
        self.write(
            script,
            f"\\set aid random(1, {5000 * args.scale})\n\\set delta random(-5000, 5000)\n"
            "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n",
        )
        hot = self.phase("hot set", ["-f", str(script)], self.start_lsn(full_id))
        uniform = self.phase("uniform", [], self.start_lsn(str(hot["id"])))
        chain_target = self.marked_time()
        chain_expected = self.fingerprint()

        d_time, d_size, _ = self.one_backup("pitr", "diff")
        _f2_time, _f2_size, _ = self.one_backup("pitr", "full")
        full_target = self.marked_time()
        full_expected = self.fingerprint()
        self.sync_archive()
        runs: dict[str, list[float]] = {"chain": [], "alone": []}
        for i in range(args.restore_runs):  # alternating, medians
            for which in ("chain", "alone") if i % 2 == 0 else ("alone", "chain"):
                if which == "chain":
                    seconds = self.restore_to(chain_target, f"chain-{i}", chain_expected)
                else:
                    seconds = self.restore_to(full_target, f"alone-{i}", full_expected)
                runs[which].append(seconds)
        chain, alone = base.median(runs["chain"]), base.median(runs["alone"])

        self.results.add(
            f"restore + replay, full + 2 incrementals vs a full alone (pitr; median of "
            f"{args.restore_runs})",
            chain,
            alone,
            "s",
        )
        self.results.notes.append(
            "goals (pitr): hot-set incremental "
            f"{hot['size'] / p_full_size:.1%} of the full (≤ 10 %), wall "
            f"{hot['time'] / p_full:.2f}x the full's (≤ 0.5x); uniform incremental "
            f"{uniform['size'] / uniform['reference']:.2f}x the moved pages compressed (≤ 1.2x), "
            f"both incrementals {(hot['size'] + uniform['size']) / MB:.1f} MB vs a file-level "
            f"differential over both loads {d_size / MB:.1f} MB ({d_time:.2f} s); restore from "
            f"the chain {chain / alone:.2f}x a full alone (≤ 1.1x; ratio column above)"
        )
        self.report()


def main(argv: Sequence[str] | None = None) -> int:
    args = base.parse_args(argv)
    bench = IncrementalBench(args)
    try:
        bench.main()
    except (KeyboardInterrupt, base.Interrupted):
        base.say("interrupted: cleaning up")
        return 130
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
