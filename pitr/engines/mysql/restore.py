"""Restoring the base of a plan and fetching its binlogs.

The full is streamed from the repository (verified as it is read) into ``mbstream -x`` and
prepared (a MySQL clone: into ``tar -x``, ready as it is); a differential is extracted beside
it, its ``from_lsn`` checked against the full's ``to_lsn`` — in the manifests before anything
is read, and in the extracted checkpoints before ``--prepare --incremental-dir``, which would
damage the full on a mismatch — then applied. The binlogs the plan replays are downloaded and
verified meanwhile, in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pitr.catalog.model import Backup, LogSegment
from pitr.engines import proc
from pitr.engines.mysql.server import MyServer
from pitr.engines.mysql.xtrainfo import read_checkpoints
from pitr.errors import (
    ObjectNotFound,
    PitrError,
    RepositoryError,
    ToolFailed,
    VerificationFailed,
)
from pitr.planner.plan import Plan
from pitr.storage.base import Storage
from pitr.storage.transfer import READ_SIZE, StoredObject, VerifiedReader

log = logging.getLogger("pitr.mysql")
PREPARE_TIMEOUT = 24 * 3600.0


def check_lsn_chain(full: Backup, diff: Backup | None) -> None:
    """Refuse a differential that does not start where its full ends (from the manifests)."""
    if diff is None:
        return
    want, got = full.engine_meta.get("to_lsn"), diff.engine_meta.get("from_lsn")
    if diff.parent != full.id or want is None or got != want:
        raise RepositoryError(
            f"differential {diff.id} starts at LSN {got}, but full {full.id} ends at LSN "
            f"{want}: applying it would damage the restored data; nothing was changed"
        )


def unpacker(backup: Backup, server: MyServer, dest: Path) -> list[str]:
    """The program that unpacks ``backup``'s objects into ``dest``: ``mbstream -x`` (or
    ``xbstream``) for the backup tools' streams, ``tar -x`` for a clone."""
    if backup.engine_meta.get("format") == "tar":
        return ["tar", "-x", "-C", str(dest), "-f", "-"]
    return [server.tool("stream"), "-x", "-C", str(dest)]


def extract(storage: Storage, obj: StoredObject, dest: Path, unpack: list[str]) -> None:
    """Stream one object, decompressed and verified, into ``unpack``. When the tool fails,
    the rest of the object is still read and checked: a corrupt object is the error to report
    (exit 8), not what the tool made of it."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    plain_zstd = obj.compression == "zstd" and obj.encryption == "none"
    zstd = shutil.which("zstd") if plain_zstd else None
    if zstd is not None:
        _extract_with_zstd(storage, obj, unpack, zstd)
        return
    tool = unpack[0]
    child = proc.start(unpack, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    tail = proc.StderrTail(child)
    assert child.stdin is not None
    with VerifiedReader(storage, obj) as reader:
        try:
            while data := reader.read(READ_SIZE):
                child.stdin.write(data)
            child.stdin.close()
            tail.wait(Path(tool).name)
        except (BrokenPipeError, ToolFailed):
            child.kill()
            child.wait()
            reader.finish()  # VerificationFailed when the object is corrupt
            tail.wait(Path(tool).name)
            raise
        except BaseException:
            child.kill()
            child.wait()
            raise


def _extract_with_zstd(storage: Storage, obj: StoredObject, unpack: list[str], zstd: str) -> None:
    """The same with the zstd program decompressing (beside pitr, on another core): pitr
    checks the stored bytes' size and sha256, zstd the frame's content checksum."""
    unzip = proc.start([zstd, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert unzip.stdin is not None and unzip.stdout is not None
    unzip_err = proc.StderrTail(unzip)
    tool = unpack[0]
    child = proc.start(unpack, stdin=unzip.stdout.fileno(), stdout=subprocess.DEVNULL)
    unzip.stdout.close()
    tail = proc.StderrTail(child)
    digest, size, broken = hashlib.sha256(), 0, False
    try:
        with storage.open(obj.key) as stream:
            while data := stream.read(READ_SIZE):
                digest.update(data)
                size += len(data)
                if not broken:
                    try:
                        unzip.stdin.write(data)
                    except BrokenPipeError:
                        broken = True  # keep reading: is the object itself intact?
        with contextlib.suppress(BrokenPipeError):
            unzip.stdin.close()
    except ObjectNotFound:
        raise VerificationFailed(f"{obj.key}: missing from the repository") from None
    except BaseException:
        for p in (unzip, child):
            p.kill()
            p.wait()
        raise
    problems = []
    if size != obj.size:
        problems.append(f"stored size {size} != {obj.size}")
    if digest.hexdigest() != obj.sha256:
        problems.append("sha256 mismatch")
    if problems:
        for p in (unzip, child):
            p.kill()
            p.wait()
        raise VerificationFailed(f"{obj.key}: {'; '.join(problems)}")
    try:
        unzip_err.wait("zstd -d")
    except ToolFailed as exc:
        child.kill()
        child.wait()
        raise VerificationFailed(f"{obj.key}: does not decompress: {exc.message}") from None
    tail.wait(Path(tool).name)


def prepare(
    server: MyServer, target: Path, incremental: Path | None = None, *, more: bool = False
) -> None:
    """``--prepare`` (MySQL's xtrabackup needs ``--apply-log-only`` while a differential is
    still to come; MariaDB's mariadb-backup does not)."""
    memory = max(128, min(1024, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                          // (8 << 20)))  # fmt: skip
    argv = [server.tool("backup"), "--no-defaults", "--prepare", f"--target-dir={target}",
            f"--use-memory={memory}M"]  # fmt: skip
    if incremental is not None:
        argv.append(f"--incremental-dir={incremental}")
    if more and server.flavor == "mysql":
        argv.append("--apply-log-only")
    proc.run(argv, what=f"{Path(argv[0]).name} --prepare", timeout=PREPARE_TIMEOUT)


def check_extracted(full_dir: Path, diff_dir: Path, full: Backup, diff: Backup) -> None:
    """The extracted checkpoints must say what the manifests said."""
    base, delta = read_checkpoints(full_dir), read_checkpoints(diff_dir)
    if delta.from_lsn != base.to_lsn or base.to_lsn != full.engine_meta.get("to_lsn"):
        raise RepositoryError(
            f"differential {diff.id} starts at LSN {delta.from_lsn}, but the extracted full "
            f"{full.id} ends at LSN {base.to_lsn}: not applying it"
        )


def restore_base(storage: Storage, server: MyServer, plan: Plan, dest: Path, scratch: Path) -> None:
    """Full (and differential) of ``plan`` into ``dest``, prepared: a data directory."""
    full, diff = plan.full, plan.differential
    assert full is not None
    check_lsn_chain(full, diff)
    diff_dir = scratch / "differential"
    with ThreadPoolExecutor(2, thread_name_prefix="extract") as pool:
        unpack = unpacker(full, server, dest)
        jobs = [pool.submit(extract, storage, o, dest, unpack) for o in full.objects]
        if diff is not None:
            unpack = unpacker(diff, server, diff_dir)
            jobs += [pool.submit(extract, storage, o, diff_dir, unpack) for o in diff.objects]
        _all(jobs)
    if full.engine_meta.get("format") == "tar":
        log.info("clone restored in %s (no prepare step)", dest)
        return
    if diff is not None:
        check_extracted(dest, diff_dir, full, diff)
    prepare(server, dest, more=diff is not None)
    if diff is not None:
        prepare(server, dest, diff_dir)
        shutil.rmtree(diff_dir, ignore_errors=True)
    log.info("base restored and prepared in %s", dest)


def _all(jobs: Sequence[Future[None]]) -> None:
    """Wait for every job; raise the first failure (after the others have finished)."""
    first: BaseException | None = None
    for job in jobs:
        try:
            job.result()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


class BinlogFetch:
    """Downloads (and verifies) the binlogs a plan replays into ``spool``, in the background;
    ``paths()`` waits for them, in replay order."""

    def __init__(self, storage: Storage, segments: Sequence[LogSegment], spool: Path) -> None:
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool = spool
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="binlog-fetch")
        self._jobs = [
            self._pool.submit(self._one, storage, seg, spool / f"{n:05d}" / seg.name)
            for n, seg in enumerate(segments)
        ]

    @staticmethod
    def _one(storage: Storage, seg: LogSegment, path: Path) -> Path:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with VerifiedReader(storage, seg.object) as reader, tmp.open("wb") as out:
                while data := reader.read(READ_SIZE):
                    out.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return path

    def paths(self) -> list[Path]:
        try:
            return [job.result() for job in self._jobs]
        except PitrError:
            self.cancel()
            raise

    def cancel(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        self.cancel()
        shutil.rmtree(self.spool, ignore_errors=True)
