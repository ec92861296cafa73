"""Client-side encryption with MariaDB on S3 (moto): a marker written into a table and into a
DDL statement is in no object of the bucket after backups, binlog archiving and events
indexing and an in-place recovery; the story passes with encryption on, restored beside and
recovered in place; a binlog decrypted by hand with ``age`` is the server's own file."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import zstandard
from my_e2e import (
    Site,
    assert_at_point,
    before_target,
    damage,
    drop_event,
    mark,
    public_dir,
    remove_tree,
    seed,
)
from servers import MotoServer

MARKER = "zq_marker_my_41d7"


def test_s3_encrypted_story_and_nothing_readable(moto_server: MotoServer) -> None:
    keys = public_dir("pitr-keys-")
    identity = keys / "identity.txt"
    public = subprocess.run(
        ["age-keygen", "-o", str(identity)], capture_output=True, text=True, check=True
    ).stderr.split()[-1]
    bucket = moto_server.create_bucket(f"pitr-my-{secrets.token_hex(4)}")
    repository = (
        f'url = "s3://{bucket}/mariadb"\nendpoint_url = "{moto_server.endpoint_url}"\n'
        'region = "us-east-1"\naddressing = "path"\n'
        f'encryption = "age"\nrecipients = ["{public}"]\nidentity_file = "{identity}"'
    )
    site = Site(public_dir(), repository, env=moto_server.env())
    try:
        seed(site, ("orders",))
        site.sql(f"CREATE TABLE shop.{MARKER}_t (v varchar(64)) COMMENT '{MARKER} comment'")
        site.sql(f"INSERT INTO shop.{MARKER}_t VALUES ('row {MARKER}')")
        site.backup("full")
        point = before_target(site, "enc", "orders")
        damage(site, point)
        mark(site, "end")
        site.flush()
        site.archive()
        events = site.ok("events")["events"]
        assert any(MARKER in e["summary"] for e in events)  # readable with the identity
        drop = drop_event(site, "orders")
        with site.restore("--gtid", drop["gtid"], "--exclusive") as (_doc, restored):
            assert_at_point(restored, point, with_c=True)
            assert restored.one(f"SELECT v FROM shop.{MARKER}_t") == f"row {MARKER}"
        assert site.ok("verify")["failed"] == []

        client = moto_server.client()
        keys_in_bucket = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        binlog = next(k for k in keys_in_bucket if k.endswith(".zst.age") and "/logs/" in k)
        stored = keys / "binlog.zst.age"
        stored.write_bytes(client.get_object(Bucket=bucket, Key=binlog)["Body"].read())
        plain = subprocess.run(
            f"age -d -i {identity} {stored} | zstd -d -c",
            shell=True, capture_output=True, check=True,
        ).stdout  # fmt: skip
        name = binlog.rsplit("/", 1)[1].removesuffix(".zst.age")
        assert plain == (Path(site.server.binlog_dir) / name).read_bytes()

        # In place, to just before the DROP (the open binlog secured, encrypted, first).
        done = site.run("recover", "--gtid", drop["gtid"], "--exclusive", "--yes", "--json")
        assert done.returncode == 0, str(done)
        site.server.proc = None  # pitr started the server again with the command line it had
        site.managed = True
        site.track()
        assert_at_point(site, point, with_c=True)
        assert site.one(f"SELECT v FROM shop.{MARKER}_t") == f"row {MARKER}"

        for key in [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert MARKER.encode() not in data, key
            if data[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame: look inside too
                inside = zstandard.ZstdDecompressor().stream_reader(data).read()
                assert MARKER.encode() not in inside, key
    finally:
        site.destroy()
        remove_tree(keys)
