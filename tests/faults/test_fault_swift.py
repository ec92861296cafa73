"""The Swift proxy stopped in the middle of a backup and started again a few seconds later:
the backup rides it out within the retry budget, publishes a backup that reads back intact,
and PostgreSQL's archiving (``wal-push``) loses nothing meanwhile."""

from __future__ import annotations

import time
import uuid

from clirun import wait_for
from faultkit import launch, reap
from pg_e2e import destroy_site, make_site, mark, public_dir, seed
from servers import SwiftServer

OUTAGE = 4.0  # seconds


def test_swift_proxy_restarted_mid_backup(swift_server: SwiftServer) -> None:
    container = f"pitr-faults-{uuid.uuid4().hex[:8]}"
    repository = f'url = "swift://{container}/pg"\ntimeout = 30'
    site = make_site(public_dir(), repository, env=swift_server.env())
    try:
        seed(site, ("victim",))
        site.sql("CREATE TABLE bulk AS SELECT g, md5(g::text) AS v "
                 "FROM generate_series(1, 600000) g")  # fmt: skip
        conn = swift_server.connection()

        def uploading() -> bool:
            _, objects = conn.get_container(container, prefix="pg/main/backups/")
            return bool(objects)

        proc = launch(site, "backup", "--type", "full", "--json")
        try:
            wait_for(uploading, 120, "the backup to start uploading")
            swift_server.stop_proxy()
            assert proc.poll() is None, "the backup ended before the outage"
            mark(site, "during the outage")  # archived once the proxy is back
            time.sleep(OUTAGE)
            swift_server.start_proxy()
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        finally:
            reap(proc)
        assert "retrying" in err  # it did meet the outage
        site.archive_now(timeout=120)
        verified = site.ok("verify")
        assert verified["failed"] == [] and verified["verified"] == verified["objects"] > 0
        assert len(site.ok("list")["backups"]) == 1
    finally:
        if not swift_server.is_running():
            swift_server.start_proxy()
        destroy_site(site)
