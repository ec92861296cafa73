"""The S3 endpoint misbehaving (a fault proxy in front of moto): 500/503 bursts, connection
resets, answers lost after the server acted, responses cut short — during a multipart backup
upload, during ``wal-push``, while ``restore`` downloads. Retried within the budget, and when
the outage outlasts it a clean failure with nothing published; every object in the repository
reads back intact, and the next plain run succeeds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_e2e import Site, destroy_site, make_site, mark, markers, public_dir, seed
from servers import MotoServer
from storage.fault_proxy import FaultProxy, downloads, uploads

BURSTS = ["503", "503", None, "500", None, "reset", None, "lost", None]


@pytest.fixture(scope="module")
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def site(moto_server: MotoServer, proxy: FaultProxy) -> Iterator[Site]:
    bucket = moto_server.create_bucket("pitr-faults-s3")
    repository = (
        f'url = "s3://{bucket}/pg"\nendpoint_url = "{proxy.endpoint_url}"\n'
        f'addressing = "path"\nregion = "{moto_server.region}"\ntimeout = 8'
    )
    site = make_site(public_dir(), repository, env=moto_server.env())
    try:
        seed(site, ("victim",))
        # some 25 MB that zstd cannot shrink much: the biggest backup object is multipart
        site.sql("CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) "
                 "AS v FROM generate_series(1, 250000) g")  # fmt: skip
        yield site
    finally:
        proxy.heal()
        destroy_site(site)


def intact(site: Site) -> None:
    """Nothing published is partial or wrong: every object reads back as recorded."""
    verified = site.ok("verify")
    assert verified["failed"] == [] and verified["verified"] == verified["objects"] > 0


def test_backup_upload_through_bursts_resets_and_lost_answers(
    site: Site, proxy: FaultProxy
) -> None:
    proxy.inject(uploads, BURSTS, limit=24)
    try:
        doc = site.backup("full")
    finally:
        proxy.heal()
    assert {"503", "500", "reset", "lost"} <= set(proxy.injected), proxy.injected
    assert doc["bytes"] > 8 << 20  # multipart
    assert doc["id"] in [b["id"] for b in site.ok("list")["backups"]]
    intact(site)


def test_backup_outage_longer_than_the_budget(site: Site, proxy: FaultProxy) -> None:
    before = [b["id"] for b in site.ok("list")["backups"]]
    proxy.inject(uploads, ["503"])
    try:
        done = site.fails(5, "backup", "--type", "full")
    finally:
        proxy.heal()
    assert "gave up after 8 s" in done.error
    assert [b["id"] for b in site.ok("list")["backups"]] == before  # nothing published
    intact(site)
    site.backup("diff")  # the next plain run


def test_wal_push_through_faults(site: Site, proxy: FaultProxy) -> None:
    proxy.inject(uploads, BURSTS, limit=12)
    try:
        for name in ("w1", "w2", "w3"):
            mark(site, name)
            site.archive_now(timeout=120)
    finally:
        proxy.heal()
    assert sum(proxy.injected.values()) > 0
    intact(site)


def test_restore_download_through_resets_and_truncations(site: Site, proxy: FaultProxy) -> None:
    mark(site, "last")
    site.archive_now()
    proxy.inject(downloads, ["truncate", None, "reset", None, "503", None, "truncate"], limit=12)
    try:
        with site.restore("--latest") as (_doc, cluster):
            assert {"w1", "w2", "w3", "last"} <= markers(cluster)
    finally:
        proxy.heal()
    assert proxy.injected["truncate"] >= 2 and proxy.injected["reset"] >= 1, proxy.injected
