"""Time ``pitr plan`` on a large repository: 100,000 WAL segments and 1,000 backups.

    python benchmarks/plan.py                        # file repository (generated once, cached)
    python benchmarks/plan.py --s3                   # also on a moto S3 server
    python benchmarks/plan.py --profile              # also cProfile the in-process plan
    python benchmarks/plan.py --segments 20000 --backups 200 --runs 3 --workdir /tmp/small

The repository (instance ``main``, PostgreSQL, timeline 1) looks like ``tests/catalogs.py``:
segment ``n`` covers LSNs ``[n * 16 MiB, (n + 1) * 16 MiB)`` and commits xids ``100n`` to
``100n + 9`` during minute ``n`` after 2026-03-01. Each segment has a 16-byte data object and
its index document (with its ten transactions); one backup every ``segments / backups``
segments (every tenth a differential of the full before it), each with a 16-byte data object
and its manifest, and the backups summary. The summary pages are what compaction leaves: two
big pages (as merged by ``write_pages``), two pages of 1,000 segments (``compact``), and a tail
of ``--tail`` index documents not yet compacted.

Generation writes through the real catalog code into a ``LocalStorage`` that skips fsync (the
files are the same; only durability differs) and is cached in ``--workdir`` (about a minute).
For ``--s3`` a fresh moto server gets, by plain HTTP PUTs from many threads, either what the
plans read (``--s3-upload needed``, the default: every catalog document - pages, tail, backups
summary, all 1,000 manifests - and the data objects and index documents of the newest 20
backup intervals; ~5,000 objects, under a minute) or the whole tree (``--s3-upload all``:
~200,000 objects, over 20 minutes). Every request the plans make returns the same keys either
way; but moto scans and sorts the whole bucket for each listing, so with the whole tree every
listing costs it ~0.3-2 s, which S3 itself (an index) does not.

The CLI runs from this script's checkout (it is put first on ``PYTHONPATH``): a copy of this
file in another worktree times that worktree.

Timed end to end, as a DBA runs it: ``python -m pitr --config FILE plan ... --json`` in a
subprocess (median and min of ``--runs``), and in-process phase by phase.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import http.client
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from catalogs import SEG, backup, minute, transactions, wal  # noqa: E402

from pitr.catalog.documents import write_document  # noqa: E402
from pitr.catalog.model import Backup, SegmentIndex  # noqa: E402
from pitr.catalog.segments import to_row  # noqa: E402
from pitr.catalog.store import CatalogStore, open_catalog  # noqa: E402
from pitr.catalog.summary import compact, write_pages  # noqa: E402
from pitr.commands.plan import make_plan  # noqa: E402
from pitr.config.settings import load_settings  # noqa: E402
from pitr.domain.streams import Readable  # noqa: E402
from pitr.domain.targets import Target, parse_target  # noqa: E402
from pitr.domain.timeutil import compact_id_time, format_time  # noqa: E402
from pitr.planner import build_plan, documents_needed  # noqa: E402
from pitr.planner.plan import Plan  # noqa: E402
from pitr.storage.base import PutResult  # noqa: E402
from pitr.storage.local import LocalStorage  # noqa: E402
from pitr.storage.transfer import StoredObject  # noqa: E402

INSTANCE = "main"
STREAM = "00000001"
GENERATOR = 1  # bump when the generated repository changes
BUCKET = "pitr-plan-bench"
S3_PREFIX = "prod"
DATA_SIZE = 16
COMPACT_STEP = 1000


@dataclass(frozen=True)
class Shape:
    segments: int
    backups: int
    tail: int

    def meta(self) -> dict[str, int]:
        return {"generator": GENERATOR, **self.__dict__}


@dataclass(frozen=True)
class Command:
    label: str
    args: tuple[str, ...]


# -- generation -------------------------------------------------------------------------------


class FastLocalStorage(LocalStorage):
    """``LocalStorage`` without fsync and temporary names: same files, written 50x faster."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._dirs: set[Path] = set()

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        path = self._path(key)
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        data = source.read()
        with open(path, "xb" if if_absent else "wb") as out:
            out.write(data)
        return PutResult(key, len(data), hashlib.sha256(data).hexdigest())


def _data_object(storage: LocalStorage, key: str, label: str) -> StoredObject:
    data = hashlib.sha256(label.encode()).digest()[:DATA_SIZE]
    storage.put(key, io.BytesIO(data))
    sha = hashlib.sha256(data).hexdigest()
    return StoredObject(key, len(data), sha, len(data), "none", sha)


def backup_starts(shape: Shape) -> list[int]:
    """The segment each backup starts in: one every ``segments / backups`` segments."""
    spacing = shape.segments // shape.backups
    return [1 + i * spacing + spacing // 10 for i in range(shape.backups)]


def generate(shape: Shape, root: Path) -> None:
    storage = FastLocalStorage(str(root))
    store = CatalogStore(storage, INSTANCE, "postgresql")
    layout = store.layout
    starts = dict((seg, i) for i, seg in enumerate(backup_starts(shape)))
    n_last = shape.segments
    step = max(1, min(COMPACT_STEP, (shape.segments - shape.tail) // 10))
    bulk = n_last - shape.tail - 2 * step  # up to here: big pages, as merged
    compact_at = {bulk + step, bulk + 2 * step}  # then two compactions of ``step`` segments
    rows: list[list[Any]] = []
    backups: list[Backup] = []
    full: Backup | None = None
    started = time.perf_counter()
    for n in range(1, n_last + 1):
        seg = wal(n)
        assert seg.max_commit is not None
        real = replace(
            seg,
            object=_data_object(storage, layout.log_object(STREAM, seg.name, ""), seg.name),
            extra={"archived_at": format_time(seg.max_commit + timedelta(seconds=9))},
        )
        index = SegmentIndex(real, tuple(transactions(seg)))
        write_document(storage, layout.log_index(STREAM, real.name), index.to_dict())
        if n <= bulk:
            rows.append(to_row(real))
        if n == bulk:
            write_pages(storage, layout, STREAM, rows)
            rows.clear()
        elif n in compact_at:
            compact(storage, layout, STREAM)
        if n in starts:
            i = starts[n]
            kind = "diff" if i % 10 == 9 and full is not None else "full"
            stamp = compact_id_time(minute(n) + timedelta(seconds=52))
            b = backup(
                f"{stamp}-{'D' if kind == 'diff' else 'F'}",
                n,
                kind=kind,
                parent=full.id if kind == "diff" and full is not None else None,
            )
            objects = tuple(_data_object(storage, o.key, o.key) for o in b.objects)
            b = replace(b, objects=objects)
            write_document(storage, layout.manifest(b.id), b.to_dict(), if_absent=True)
            backups.append(b)
            if kind == "full":
                full = b
        if n % 10_000 == 0:
            print(f"  {n} segments, {len(backups)} backups "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    store.write_backups_summary(backups)


def ensure_repository(shape: Shape, workdir: Path, regenerate: bool) -> Path:
    """The cached repository for ``shape`` (generated when absent, stale or asked for)."""
    root, meta = workdir / "repo", workdir / "meta.json"
    if not regenerate and meta.exists() and json.loads(meta.read_text()) == shape.meta():
        print(f"using the repository cached in {root}")
        return root
    shutil.rmtree(root, ignore_errors=True)
    meta.unlink(missing_ok=True)
    root.mkdir(parents=True)
    print(f"generating {shape.segments} segments and {shape.backups} backups in {root} ...")
    started = time.perf_counter()
    generate(shape, root)
    meta.write_text(json.dumps(shape.meta()))  # last: marks the cache complete
    print(f"generated in {time.perf_counter() - started:.1f} s "
          f"({sum(1 for _ in files_of(root))} objects)")  # fmt: skip
    return root


def files_of(root: Path) -> Iterator[Path]:
    for directory, _dirs, names in os.walk(root):
        for name in names:
            yield Path(directory) / name


# -- S3 ---------------------------------------------------------------------------------------


def needed_only(shape: Shape, root: Path) -> Callable[[str], bool]:
    """Keys worth uploading when only the plans' objects are wanted: every catalog document
    (pages, tail, manifests, summaries), and data objects and index documents of the newest
    20 backup intervals."""
    first = backup_starts(shape)[max(0, shape.backups - 20)]
    newest = {wal(n).name for n in range(first, shape.segments + 1)}
    logs = f"{INSTANCE}/logs/"
    backups_dir = f"{INSTANCE}/backups/"
    store = CatalogStore(LocalStorage(str(root)), INSTANCE, "postgresql")
    kept_backups = {b.id for b in store.load_backups() if b.start_key >= first * SEG}

    def wanted(key: str) -> bool:
        if key.startswith(logs):
            return key.rsplit("/", 1)[1].split(".", 1)[0] in newest
        if key.startswith(backups_dir):
            return key.endswith("/manifest.json") or key.split("/")[2] in kept_backups
        return True

    return wanted


def upload_tree(
    root: Path, endpoint: str, wanted: Callable[[str], bool], threads: int
) -> tuple[int, float]:
    """PUT every wanted file of ``root`` into the bucket: plain HTTP on keep-alive connections
    (moto checks no signature), which costs the client far less than boto3 per request."""
    host, port = urlsplit(endpoint).netloc.split(":")
    local = threading.local()
    keys = sorted(key for key in (str(p.relative_to(root)) for p in files_of(root)) if wanted(key))

    def put(key: str) -> None:
        body = (root / key).read_bytes()
        path = quote(f"/{BUCKET}/{S3_PREFIX}/{key}", safe="/~")
        for attempt in range(5):
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                local.conn.request("PUT", path, body, {"Content-Length": str(len(body))})
                response = local.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                local.conn.close()
                del local.conn
                if attempt == 4:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"PUT {path}: HTTP {response.status}")
            return

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(put, keys), 1):
            if done % 20_000 == 0:
                print(f"  {done}/{len(keys)} uploaded "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return len(keys), time.perf_counter() - started


# -- timing -----------------------------------------------------------------------------------


def commands(shape: Shape) -> list[Command]:
    near = shape.segments - 30
    at = (minute(near) + timedelta(seconds=27)).isoformat()
    return [
        Command("plan --at <near end>", ("plan", "--at", at, "--json")),
        Command("plan --latest", ("plan", "--latest", "--json")),
        Command("plan --xid <near end>", ("plan", "--xid", str(100 * near + 5), "--json")),
    ]


def clean_env(extra: dict[str, str], home: Path) -> dict[str, str]:
    """The CLI's environment: no PITR_/AWS_/Swift settings but ``extra``, and this checkout's
    ``pitr`` first on the path (so that a copy of this script times its own checkout)."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_", "ST_", "OS_"))
    }
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return {**base, "HOME": str(home), "PYTHONPATH": path, **extra}


@dataclass(frozen=True)
class Timed:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process: what other load on the machine inflates less


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[Timed, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Timed(elapsed, cpu), done.stdout


def check_plan(doc: dict[str, Any], label: str) -> str:
    plan = doc["plan"]
    if not plan["recoverable"]:
        raise SystemExit(f"{label}: not recoverable: {plan.get('problems')}")
    steps = plan["steps"]
    replay = next(s for s in steps if s["action"] == "replay_logs")
    return f"{' + '.join(s['action'] for s in steps)}, {len(replay['logs'])} WAL segments"


def time_cli(config: Path, env: dict[str, str], shape: Shape, runs: int) -> dict[str, list[Timed]]:
    results: dict[str, list[Timed]] = {}
    for command in commands(shape):
        times = []
        for k in range(runs):
            elapsed, out = run_cli(["-m", "pitr", "--config", str(config), *command.args], env,
                                   config.parent)  # fmt: skip
            times.append(elapsed)
            if k == 0:
                print(f"  {command.label}: {check_plan(json.loads(out), command.label)}")
        results[command.label] = times
    return results


def time_startup(env: dict[str, str], cwd: Path, runs: int) -> list[Timed]:
    return [run_cli(["-m", "pitr", "--version"], env, cwd)[0] for _ in range(runs)]


def import_costs(config: Path, env: dict[str, str], shape: Shape) -> list[tuple[int, str]]:
    """Cumulative import time (µs) of the top-level imports of one ``plan --latest``."""
    args = ["-X", "importtime", "-m", "pitr", "--config", str(config), *commands(shape)[1].args]
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=config.parent, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    costs: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        name = name[1:]  # one space separates the column; more means a nested import
        if not name.startswith(" "):
            costs[name] = int(cumulative)
    return sorted(((us, name) for name, us in costs.items()), reverse=True)


def _target(engine: str, args: Sequence[str]) -> Target:
    options: dict[str, Any] = {}
    rest = list(args[1:])
    while rest:
        flag = rest.pop(0)
        if flag == "--latest":
            options["latest"] = True
        elif flag in ("--at", "--xid"):
            options[flag[2:]] = rest.pop(0)
    return parse_target(engine, now=datetime.now(UTC), **options)


def phases(store: CatalogStore, target: Target) -> tuple[dict[str, float], Plan]:
    """One plan as ``make_plan`` makes it, timing each step (seconds)."""
    marks: dict[str, float] = {}
    clock = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        marks[name] = now - clock
        clock = now

    catalog = store.load()
    mark("load (backups, streams, histories)")
    located = store.transactions(documents_needed(catalog, target))
    mark("documents_needed + transactions")
    plan = build_plan(catalog, target, located=located)
    mark("build_plan")
    wrong = store.confirm(plan.required_objects())
    mark("confirm (listing)")
    if wrong:
        raise SystemExit(f"objects missing or wrong: {sorted(wrong.items())[:5]}")
    json.dumps(plan.to_dict())
    mark("to_dict + JSON")
    marks["total"] = sum(marks.values())
    return marks, plan


def load_parts(store: CatalogStore) -> dict[str, float]:
    """What ``store.load()`` reads, part by part, one after the other (seconds)."""
    marks: dict[str, float] = {}
    for name, part in (
        ("backups: listing + summary", store.load_backups),
        ("streams: pages + tail", store.load_streams),
        ("histories", store.load_histories),
    ):
        started = time.perf_counter()
        part()
        marks[name] = time.perf_counter() - started
    return marks


def time_phases(store: CatalogStore, shape: Shape, runs: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    parts: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, seconds in load_parts(store).items():
            parts.setdefault(name, []).append(seconds)
    results["store.load(), part by part (one after the other)"] = parts
    for command in commands(shape):
        target = _target(store.engine, command.args)
        per_phase: dict[str, list[float]] = {}
        for _ in range(runs):
            marks, plan = phases(store, target)
            assert plan.recoverable, plan.problems
            for name, seconds in marks.items():
                per_phase.setdefault(name, []).append(seconds)
        results[command.label] = per_phase
    return results


def profiled_plan(store: CatalogStore, target: Target) -> tuple[pstats.Stats, int]:
    """cProfile of ``make_plan`` in every thread it starts (catalog reads run in pools), the
    threads' times added up (they can sum to more than the wall time); and how many threads."""
    profiles = [cProfile.Profile()]

    def per_thread(*_event: object) -> None:
        sys.setprofile(None)
        thread_profile = cProfile.Profile()
        profiles.append(thread_profile)
        thread_profile.enable()

    threading.setprofile(per_thread)
    try:
        profiles[0].runcall(make_plan, store, target)
    finally:
        threading.setprofile(None)
    stats = pstats.Stats(profiles[0])
    for thread_profile in profiles[1:]:
        stats.add(thread_profile)
    return stats, len(profiles)


def profile(store: CatalogStore, shape: Shape, top: int) -> None:
    for command in commands(shape):
        stats, threads = profiled_plan(store, _target(store.engine, command.args))
        print(f"\n== cProfile: {command.label} (all {threads} threads, summed) ==")
        stats.strip_dirs()
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)


# -- report -----------------------------------------------------------------------------------


def seconds(values: Sequence[float]) -> str:
    return f"{statistics.median(values):7.3f} {min(values):7.3f}"


def report_cli(where: str, results: dict[str, list[Timed]], startup: Sequence[Timed]) -> None:
    print(f"\n{where}: end to end, python -m pitr ... (seconds)")
    print(f"  {'command':28} {'median':>7} {'min':>7}  {'cpu med':>7} {'cpu min':>7}")
    for label, times in {**results, "pitr --version (start-up)": startup}.items():
        wall, cpu = [t.wall for t in times], [t.cpu for t in times]
        print(f"  {label:28} {seconds(wall)}  {seconds(cpu)}")


def report_phases(where: str, results: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{where}: in-process phases (seconds: median, min)")
    for label, per_phase in results.items():
        print(f"  {label}")
        for name, times in per_phase.items():
            print(f"    {name:36} {seconds(times)}")


def write_config(path: Path, repository: str) -> Path:
    path.write_text(
        f'[repository]\n{repository}\n\n[instances.{INSTANCE}]\nengine = "postgresql"\n'
    )
    return path


def bench(
    where: str, config: Path, env: dict[str, str], shape: Shape, args: argparse.Namespace
) -> None:
    print(f"\n== {where} ==")
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        settings = load_settings(str(config))
        store = open_catalog(settings, settings.instance(INSTANCE))
        cli = time_cli(config, env, shape, args.runs)
        startup = time_startup(env, config.parent, args.runs)
        report_cli(where, cli, startup)
        report_phases(where, time_phases(store, shape, args.runs))
        print(f"\n{where}: heaviest top-level imports of 'plan --latest' (ms, cumulative)")
        for us, name in import_costs(config, env, shape)[:8]:
            print(f"    {name:36} {us / 1000:7.1f}")
        if args.profile:
            profile(store, shape, args.top)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--backups", type=int, default=1_000)
    parser.add_argument("--tail", type=int, default=50, help="index documents not compacted")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pitr-plan-bench"))
    parser.add_argument("--regenerate", action="store_true", help="ignore the cached repository")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="also time a moto S3 server")
    parser.add_argument("--s3-upload", choices=("needed", "all"), default="needed")
    parser.add_argument("--threads", type=int, default=32, help="S3 upload threads")
    parser.add_argument("--no-file", action="store_true", help="skip the file repository")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process plans")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print")
    args = parser.parse_args()
    shape = Shape(args.segments, args.backups, args.tail)
    if shape.segments < 20 * shape.backups or shape.tail < 40:
        parser.error("need at least 20 segments per backup and a tail of 40")
    if minute(shape.segments) > datetime.now(UTC):
        parser.error("too many segments: the newest would be in the future")
    workdir: Path = args.workdir.resolve()
    root = ensure_repository(shape, workdir, args.regenerate)
    if not args.no_file:
        config = write_config(workdir / "file.toml", f'url = "file://{root}"')
        bench("file repository", config, clean_env({}, workdir), shape, args)
    if args.s3:
        from servers.moto import MotoServer

        server = MotoServer()
        server.start()
        try:
            server.create_bucket(BUCKET)
            wanted = needed_only(shape, root) if args.s3_upload == "needed" else lambda _k: True
            print(f"\nuploading to {server.endpoint_url} ({args.s3_upload}) ...")
            count, took = upload_tree(root, server.endpoint_url, wanted, args.threads)
            print(f"uploaded {count} objects in {took:.1f} s ({count / took:.0f}/s)")
            config = write_config(
                workdir / "s3.toml",
                f'url = "s3://{BUCKET}/{S3_PREFIX}"\nendpoint_url = "{server.endpoint_url}"',
            )
            bench("S3 (moto)", config, clean_env(server.env(), workdir), shape, args)
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
