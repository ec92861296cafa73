"""``archive_command = 'pitr wal-push --async %p'``: a resident worker archives ahead of the
archiver; nothing is acknowledged before it is in the repository, and a recovery from what it
archived is complete."""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path

from pg_e2e import checksum_sql, destroy_site, file_site, mark, markers, public_dir, seed


def test_async_archiving_then_latest_recovery() -> None:
    base = public_dir()
    site = file_site(base, wal_push="wal-push --async")
    try:
        seed(site, ("kept",))
        site.backup("full")
        names = []
        for n in range(6):
            mark(site, f"m{n}")
            names.append(site.archive_now())
        archived = {log["last"] for log in site.ok("list")["logs"]}
        assert names[-1] in archived
        home = Path(pwd.getpwnam("postgres").pw_dir)  # archive_command runs as postgres
        spool = home / ".local/state/pitr/spool/main/archive"
        assert (spool / "worker.log").exists()  # the worker did the archiving
        with site.restore("--latest") as (doc, cluster):
            assert doc["status"] == "ACTIVE"
            assert {f"m{n}" for n in range(6)} <= markers(cluster)
            assert cluster.one(checksum_sql("kept")) == site.checksum("kept")
    finally:
        destroy_site(site)
        shutil.rmtree(base, ignore_errors=True)
