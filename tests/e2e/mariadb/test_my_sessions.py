"""Replay as one session across binlog rotations, on a real MariaDB 10.11: a target naming two
GTID domains (sessions writing with ``gtid_domain_id = 1``), and statement-logged work on a
temporary table created before ``FLUSH BINARY LOGS`` and read after it — replayed file by file,
the temporary table would be gone when the next binlog uses it. A restore beside replays with
the restored server's replication SQL thread: it must leave no replication state behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest
from my_e2e import VERSIONS, Site, file_site, mark, public_dir, root_of, seed


@dataclass(frozen=True)
class Story:
    site: Site
    domains_target: str  # both domains' GTIDs just after P2 (domain 1)
    final_checksum: int
    slave_pos: str  # the instance's gtid_slave_pos when the backup was taken


SLAVE_POS = "7-99-5"


def session(site: Site, *setup: str) -> pymysql.connections.Connection[Any]:
    conn = site.connect()
    with conn.cursor() as cur:
        for statement in setup:
            cur.execute(statement)
    return conn


def run(conn: pymysql.connections.Connection[Any], *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


@pytest.fixture(scope="module", params=VERSIONS)
def story(request: pytest.FixtureRequest) -> Iterator[Story]:
    site = file_site(public_dir(), root=root_of(request.param))
    try:
        seed(site, ())
        site.sql("CREATE TABLE shop.final (id INT PRIMARY KEY, v VARCHAR(64))")
        # As if it once was a replica of a domain it never logged (log_slave_updates off):
        # mariadb-backup records gtid_current_pos, which holds it; the binlogs do not.
        site.sql(f"SET GLOBAL gtid_slave_pos = '{SLAVE_POS}'")
        site.backup("full")
        # two GTID domains: this session writes in domain 1, the others in domain 0
        other = session(site, "SET SESSION gtid_domain_id = 1")
        mark(site, "d0-A")
        run(other, "INSERT INTO shop.markers (name) VALUES ('d1-P1')")
        site.flush()
        mark(site, "d0-B")
        run(other, "INSERT INTO shop.markers (name) VALUES ('d1-P2')")
        target = site.gtid()
        assert target.count(",") == 1 and target.startswith("0-1-") and ",1-1-" in target
        mark(site, "d0-C")
        run(other, "INSERT INTO shop.markers (name) VALUES ('d1-P3')")
        other.close()
        # a temporary table, statement-logged, created before a rotation and used after it;
        # a transaction open in that session while another session rotates
        work = session(site, "SET SESSION binlog_format = 'STATEMENT'")
        run(work, "CREATE TEMPORARY TABLE shop.stage (id INT, v VARCHAR(64))",
            "INSERT INTO shop.stage SELECT seq, MD5(seq) FROM shop.seq_1_to_50")  # fmt: skip
        site.flush()
        run(work, "INSERT INTO shop.final SELECT id, v FROM shop.stage", "BEGIN",
            "INSERT INTO shop.final SELECT id + 100, CONCAT(v, 'x') FROM shop.stage")  # fmt: skip
        site.flush()
        run(work, "UPDATE shop.final f JOIN shop.stage s ON f.id = s.id + 100 SET f.v = s.id",
            "COMMIT", "DROP TEMPORARY TABLE shop.stage")  # fmt: skip
        work.close()
        mark(site, "end")
        site.flush()
        site.archive()
        yield Story(site, target, site.checksum("final"), SLAVE_POS)
    finally:
        site.destroy()


def test_a_target_in_two_gtid_domains(story: Story) -> None:
    site = story.site
    plan = site.ok("plan", "--gtid", story.domains_target)["plan"]
    assert plan["recoverable"] and len(plan["steps"][-1]["logs"]) >= 2
    with site.restore("--gtid", story.domains_target) as (doc, restored):
        assert doc["reached"]["gtid"] == story.domains_target
        found = {m for m in restored.markers() if m.startswith("d")}
        assert found == {"d0-A", "d1-P1", "d0-B", "d1-P2"}
        assert restored.gtid() == story.domains_target


def test_a_temporary_table_used_across_a_rotation(story: Story) -> None:
    site = story.site
    events = site.ok("events", "--grep", "stage")["events"]
    created = [e["log"] for e in events if "CREATE TEMPORARY TABLE" in e["summary"]]
    used = [e["log"] for e in events if e["summary"].startswith("INSERT INTO shop.final")]
    assert len(created) == 1 and used and all(log > created[0] for log in used), events
    with site.restore("--latest") as (_doc, restored):
        assert restored.one("SELECT COUNT(*) FROM shop.final") == 100
        assert restored.one("SELECT v FROM shop.final WHERE id = 107") == "7"
        assert restored.checksum("final") == story.final_checksum
        assert "end" in restored.markers()


def test_replay_leaves_no_replication_state(story: Story) -> None:
    site = story.site
    with site.restore("--gtid", story.domains_target) as (_doc, restored):
        assert restored.sql("SHOW ALL SLAVES STATUS") == []
        assert restored.one("SELECT @@gtid_slave_pos") == story.slave_pos
        assert not any(
            g.startswith("7-") for g in restored.one("SELECT @@gtid_binlog_pos").split(",")
        )
        assert restored.one("SELECT @@server_id") == site.one("SELECT @@server_id")
        left = [p.name for p in restored.datadir.iterdir() if "relay" in p.name
                or (p.name.startswith("master-") and p.name.endswith(".info"))]  # fmt: skip
        assert left == []
        connections = restored.datadir / "multi-master.info"
        assert not connections.exists() or "pitr" not in connections.read_text()
        # the replayed transactions are in the restored server's binlog, as they were written
        writers = set()
        for name, *_size in restored.sql("SHOW BINARY LOGS"):
            events = restored.sql(f"SHOW BINLOG EVENTS IN '{name}'")
            writers |= {int(e[3]) for e in events if e[2] == "Gtid"}
        assert writers == {int(site.one("SELECT @@server_id"))}
        restored.sql("INSERT INTO shop.markers (name) VALUES ('after')")
        assert restored.gtid().startswith("0-1-") and "1-1-" in restored.gtid()
