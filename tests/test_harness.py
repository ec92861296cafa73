"""Each real server used by the integration tests starts and answers."""

from __future__ import annotations

import json
import uuid

from servers import MariaDBFactory, MotoServer, PgFactory, SwiftServer


def test_postgres(pg_factory: PgFactory) -> None:
    pg = pg_factory(gucs={"max_wal_size": "64MB"})
    assert pg.is_running()
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg.sql("INSERT INTO t VALUES (%s, %s), (%s, %s)", 1, "a", 2, "b")
    assert pg.sql("SELECT id, v FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert pg.sql("SHOW data_checksums") == [("on",)]
    assert pg.sql("SHOW wal_level") == [("replica",)]
    assert pg.sql("SHOW archive_mode") == [("on",)]
    lsn = pg.sql("SELECT pg_switch_wal()")[0][0]
    assert lsn
    pg.restart()
    assert pg.sql("SELECT count(*) FROM t") == [(2,)]
    datadir_owner = pg.run_as_postgres(["stat", "-c", "%U %a", pg.datadir]).stdout.split()
    assert datadir_owner == ["postgres", "700"]
    pg.stop()
    assert not pg.is_running()


def test_mariadb(mariadb_factory: MariaDBFactory) -> None:
    db = mariadb_factory(extra_args=["--gtid-strict-mode=1"])
    assert db.query("SELECT @@gtid_strict_mode, @@log_bin, @@binlog_format") == [(1, 1, "ROW")]
    db.query("CREATE DATABASE d")
    db.query("CREATE TABLE d.t (id int PRIMARY KEY, v varchar(10)) ENGINE=InnoDB")
    db.query("INSERT INTO d.t VALUES (%s, %s)", 1, "a")
    assert db.query("SELECT id, v FROM d.t") == [(1, "a")]
    db.query("FLUSH BINARY LOGS")
    logs = [row[0] for row in db.query("SHOW BINARY LOGS")]
    assert len(logs) >= 2
    for name in logs:
        assert (db.binlog_dir / name).is_file()
    assert (db.binlog_dir / logs[0]).read_bytes()[:4] == b"\xfebin"
    db.stop()
    assert not db.is_running()


def test_moto(moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket(f"harness-{uuid.uuid4().hex[:12]}")
    s3 = moto_server.client()
    s3.put_object(Bucket=bucket, Key="dir/key", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="dir/key")["Body"].read() == b"hello"


def test_swift(swift_server: SwiftServer) -> None:
    conn = swift_server.connection()
    container = swift_server.create_container(f"harness-{uuid.uuid4().hex[:12]}")
    conn.put_object(container, "plain", b"hello swift")
    assert conn.get_object(container, "plain")[1] == b"hello swift"

    # Static large object: two segments, then the manifest.
    parts = [b"a" * 1024, b"b" * 1000]
    manifest = []
    for i, data in enumerate(parts):
        seg = f"slo/seg{i:04d}"
        etag = conn.put_object(container, seg, data)
        manifest.append({"path": f"/{container}/{seg}", "etag": etag, "size_bytes": len(data)})
    conn.put_object(
        container,
        "big",
        json.dumps(manifest),
        query_string="multipart-manifest=put",
    )
    headers, body = conn.get_object(container, "big")
    assert body == b"".join(parts)
    assert headers.get("x-static-large-object") == "True"
