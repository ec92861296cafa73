"""``archive_command = 'pitr wal-push --async %p'``: a resident worker archives ahead of the
archiver; nothing is acknowledged before it is in the repository, and a recovery from what it
archived is complete. The same with the documented shell form, which answers from the
worker's status files without starting pitr while a worker runs."""

from __future__ import annotations

import shutil

import pytest
from pg_e2e import checksum_sql, destroy_site, file_site, mark, markers, public_dir, seed


@pytest.mark.parametrize("form", ["pitr", "shell"])
def test_async_archiving_then_latest_recovery(form: str) -> None:
    base = public_dir()
    spool = base / "spool" / "main" / "archive"  # spool_dir = base/spool (see make_site)
    prefix = (  # docs/postgresql.md, "Asynchronous archiving"
        f"d={spool}; rm $d/%f.ok 2>/dev/null && exit 0; [ -e $d/worker.lock ] && "
        "! flock -ns $d/worker.lock true && for i in $(seq 400); do rm $d/%f.ok 2>/dev/null "
        "&& exit 0; sleep 0.005; done; exec "
        if form == "shell"
        else ""
    )
    site = file_site(base, wal_push="wal-push --async", archive_prefix=prefix)
    try:
        seed(site, ("kept",))
        site.backup("full")
        names = []
        for n in range(6):
            mark(site, f"m{n}")
            names.append(site.archive_now())
        archived = {log["last"] for log in site.ok("list")["logs"]}
        assert names[-1] in archived
        assert (spool / "worker.log").exists()  # the worker did the archiving
        with site.restore("--latest") as (doc, cluster):
            assert doc["status"] == "ACTIVE"
            assert {f"m{n}" for n in range(6)} <= markers(cluster)
            assert cluster.one(checksum_sql("kept")) == site.checksum("kept")
    finally:
        destroy_site(site)
        shutil.rmtree(base, ignore_errors=True)
