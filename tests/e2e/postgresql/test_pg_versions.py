"""PostgreSQL major versions (docs/postgresql.md, "Supported versions").

- On every version: real WAL read by ``pitr inspect`` as that version's ``pg_waldump`` reads it,
  and the major recorded in the WAL index documents and the backup manifests.
- Programs of another major (``bindir``) refused by ``check``, ``backup``, ``restore``, ``recover``
  and ``wal-push`` (exit 6, naming both versions and the bindir), WAL of a version pitr does not
  know refused by ``wal-push`` (exit 3): nothing changed, nothing written to the repository.
- A cluster upgraded with ``pg_upgrade`` (17 → 18) is a new system: ``check`` and ``status`` ask
  for a new full backup, ``list`` shows both, a plan never mixes them, and the old backup is
  restored with the old version's programs only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from pg_e2e import (
    Point,
    Site,
    before_target,
    destroy_site,
    file_site,
    mark,
    markers,
    public_dir,
    seed,
    set_aside,
)
from servers import PostgresServer
from servers.common import free_port
from servers.postgres import bindir_for


def fetch_segment(site: Site, name: str) -> Path:
    """The archived segment ``name``, as ``pitr wal-fetch`` gives it back."""
    dest = site.base / "fetched" / name
    dest.parent.mkdir(exist_ok=True)
    done = site.run("wal-fetch", name, str(dest))
    assert done.returncode == 0, str(done)
    return dest


def repo_documents(site: Site, pattern: str) -> list[dict[str, object]]:
    assert site.repo_dir is not None
    return [json.loads(p.read_text()) for p in sorted(site.repo_dir.rglob(pattern))]


def with_bindir(site: Site, bindir: Path, name: str) -> str:
    """A copy of the site's configuration whose ``bindir`` is ``bindir``; its path."""
    text = re.sub(r'(?m)^bindir = ".*"$', f'bindir = "{bindir}"', site.config.read_text())
    path = site.base / name
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def waldump_commits(bindir: Path, segment: Path) -> list[int]:
    done = subprocess.run(
        [str(bindir / "pg_waldump"), "--rmgr=Transaction", str(segment)],
        capture_output=True, text=True, check=False, cwd=segment.parent,
    )  # fmt: skip
    found = re.findall(r"tx:\s+(\d+), lsn: \S+, prev \S+, desc: COMMIT ", done.stdout)
    assert found, done.stderr
    return sorted(int(x) for x in found)


def test_wal_and_backups_of_each_version(site: Site, pg_major: int) -> None:
    """Real WAL of this version: ``inspect`` finds the commits that version's ``pg_waldump``
    finds, and the restore point; its index document and the backup record the major."""
    assert site.one("SHOW data_checksums") == "on"  # 18: initdb's default, no option given
    site.sql("CREATE TABLE t (id int)")
    with site.server.connect() as conn, conn.transaction():
        xid = int(conn.execute("SELECT txid_current()").fetchall()[0][0])
        conn.execute("INSERT INTO t VALUES (1)")
    site.sql("SELECT pg_create_restore_point('v-rp')")
    name = site.archive_now()
    segment = fetch_segment(site, name)

    (doc,) = site.ok("inspect", str(segment))["files"]
    assert doc["server_version"] == f"PostgreSQL {pg_major}"
    assert doc["switched"] is True and doc["truncated"] is False
    commits = sorted(t["xid"] for t in doc["transactions"] if t["status"] == "commit")
    assert xid in commits
    assert commits == waldump_commits(site.server.bindir, segment)
    assert [p["name"] for p in doc["restore_points"]] == ["v-rp"]

    (index,) = repo_documents(site, f"{name}.json")
    assert index["server_major"] == str(pg_major)
    backup = site.backup("full")
    (manifest,) = repo_documents(site, "manifest.json")
    assert manifest["server_major"] == str(pg_major)
    (listed,) = site.ok("list")["backups"]
    assert (listed["id"], listed["server_major"]) == (backup["id"], str(pg_major))


def test_programs_of_another_major_are_refused() -> None:
    """A PostgreSQL 17 instance, configured with 18's (or 15's) programs: every command that
    would run them refuses at once, changing nothing."""
    site = file_site(public_dir(), major=17)
    try:
        bin18 = bindir_for(18)
        wrong = with_bindir(site, bin18, "wrong.toml")
        for command in (["check"], ["backup", "--type", "full"]):
            done = site.fails(6, *command, config=wrong)
            assert done.error == (
                f"error: instance main is PostgreSQL 17 but {bin18}/pg_waldump is PostgreSQL 18 "
                f"(bindir {bin18}); nothing was changed"
            )
            assert "HINT: set bindir to PostgreSQL 17's programs" in done.stderr
        assert site.ok("list")["backups"] == []

        seed(site, ("victim",))
        full = site.backup("full")
        mark(site, "after")
        name = site.archive_now()

        dest = site.base / "restored"
        port = str(free_port())
        done = site.fails(6, "restore", "--latest", "--to", str(dest), "--port", port,
                          config=wrong)  # fmt: skip
        assert done.error == (
            f"error: backup {full['id']} is PostgreSQL 17 but {bin18}/postgres is PostgreSQL 18 "
            f"(bindir {bin18}); nothing was changed"
        )
        assert not dest.exists()
        pid = site.server.postmaster_pid()
        done = site.fails(6, "recover", "--latest", "--yes", config=wrong)
        assert f"backup {full['id']} is PostgreSQL 17 but {bin18}/pg_ctl" in done.error
        assert site.server.postmaster_pid() == pid and set_aside(site) == []
        assert "after" in markers(site)

        # wal-push: 15's pg_waldump cannot index 17's WAL.
        bin15 = bindir_for(15)
        segment = fetch_segment(site, name)
        done = site.fails(6, "wal-push", str(segment), config=with_bindir(site, bin15, "15.toml"))
        assert done.error.startswith(
            f"error: WAL segment {name} is PostgreSQL 17 but {bin15}/pg_waldump is PostgreSQL 15"
        )
    finally:
        destroy_site(site)


def test_wal_of_an_unknown_version_is_refused(site: Site) -> None:
    """WAL whose page magic is newer than 18's, in a data directory whose PG_VERSION says 19:
    exit 3 naming the version and what to do; nothing reaches the repository."""
    name = site.archive_now()
    real = fetch_segment(site, name).read_bytes()
    future = bytearray(real)
    future[0:2] = (0xD11B).to_bytes(2, "little")
    fake = site.base / "pg19"
    (fake / "pg_wal").mkdir(parents=True)
    (fake / "PG_VERSION").write_text("19\n")
    unknown = "0000000100000000000000F0"
    (fake / "pg_wal" / unknown).write_bytes(future)
    done = site.fails(3, "wal-push", f"pg_wal/{unknown}", cwd=fake)
    assert done.error.startswith(f"error: WAL segment {unknown} is PostgreSQL 19, which pitr ")
    assert "(it knows PostgreSQL 13 to 18)" in done.error
    assert "HINT: install a pitr release that supports PostgreSQL 19" in done.stderr
    (fake / "PG_VERSION").unlink()  # no data directory to ask: the magic says enough
    done = site.fails(3, "wal-push", f"pg_wal/{unknown}", cwd=fake)
    assert "WAL of a PostgreSQL newer than 18 (page magic 0xD11B)" in done.error
    assert site.repo_dir is not None
    assert not list(site.repo_dir.rglob(f"{unknown}*"))


def pg_upgrade(site: Site, new: PostgresServer) -> None:
    """Upgrade the site's (stopped) cluster into ``new``'s data directory with pg_upgrade,
    then put the result in the site's data directory, with the old configuration."""
    old = site.server
    work = new.make_dir("upgrade")
    new.run_as_postgres(
        [new.bindir / "pg_upgrade", "-b", old.bindir, "-B", new.bindir, "-d", old.datadir,
         "-D", new.datadir, "-p", str(free_port()), "-P", str(free_port()), "-s", work],
        timeout=300,
    )  # fmt: skip
    for conf in ("postgresql.conf", "postgresql.auto.conf"):
        shutil.copy2(old.datadir / conf, new.datadir / conf)
    old.datadir.rename(old.datadir.with_name("data.v17"))
    shutil.move(new.datadir, old.datadir)
    old.bindir, old.major = new.bindir, new.major


def test_pg_upgrade_makes_a_new_system() -> None:
    site = file_site(public_dir(), major=17)
    new = PostgresServer(major=18)
    try:
        seed(site, ("victim",))
        old_full = site.backup("full")
        point = before_target(site, "old", "victim")
        mark(site, "old-C")
        site.archive_now()
        site.server.stop()
        new.init()
        pg_upgrade(site, new)
        with_bindir(site, site.server.bindir, "pitr.toml")  # the DBA's new bindir
        config17 = with_bindir(site, bindir_for(17), "pitr17.toml")
        site.server.start()
        assert site.one("SHOW server_version_num").startswith("18")

        done = site.fails(6, "check")
        assert "has no full backup: the repository's full backups are of system" in done.error
        assert "HINT: take a new full backup: pitr backup --type full" in done.stderr
        status = site.run("status", "--json")
        assert status.returncode == 2, str(status)
        (system,) = [c for c in status.json()["checks"] if c["name"] == "system"]
        assert system["status"] == "CRIT" and "take a new full backup" in system["detail"]

        mark(site, "new-A")
        new_full = site.backup("full")
        backups = {b["id"]: b for b in site.ok("list")["backups"]}
        assert [backups[b["id"]]["server_major"] for b in (old_full, new_full)] == ["17", "18"]
        assert backups[old_full["id"]]["system"] != backups[new_full["id"]]["system"]
        assert site.ok("check")["ok"] is True
        assert site.run("status").returncode == 0

        restore_before_and_after(site, point, old_full["id"], new_full["id"], config17)
    finally:
        new.destroy()
        destroy_site(site)


def restore_before_and_after(
    site: Site, point: Point, old_full: str, new_full: str, config17: str
) -> None:
    """Before the upgrade: the old system's backup and WAL only, with 17's programs (18's
    are refused). After it: the new system's backup."""
    plan = site.ok("plan", *point.option("at"))["plan"]
    assert plan["recoverable"] is True
    assert plan["steps"][0]["backup"] == old_full
    dest = site.base / "restored17"
    done = site.fails(6, "restore", *point.option("at"), "--to", str(dest))
    assert f"backup {old_full} is PostgreSQL 17 but " in done.error
    assert "is PostgreSQL 18" in done.error and not dest.exists()
    with site.restore(*point.option("at"), config=config17) as (doc, cluster):
        assert doc["recovered_from_backup"] == old_full
        assert str(cluster.one("SHOW server_version_num")).startswith("17")
        assert {"old-A", "old-B"} <= markers(cluster)
        assert "old-C" not in markers(cluster) and "new-A" not in markers(cluster)

    mark(site, "new-B")
    site.archive_now()
    plan = site.ok("plan", "--latest")["plan"]
    assert plan["steps"][0]["backup"] == new_full
    with site.restore("--latest") as (doc, cluster):
        assert doc["recovered_from_backup"] == new_full
        assert {"old-A", "old-B", "old-C", "new-A", "new-B"} <= markers(cluster)
