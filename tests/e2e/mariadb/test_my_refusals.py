"""Refusals of ``restore`` and ``recover`` that must leave every data directory as it was, on a
real MariaDB: a differential whose LSN chain does not continue its full (refused before
``--prepare --incremental-dir``, which would damage the full), a GTID the archived binlogs
do not hold (``recover`` secures the newest binlog first, then refuses), and a replay that
ends short of the target (the GTID check: exit 7, the replaced data directory kept)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from my_e2e import Site, file_site, keep_pristine, mark, pristine, public_dir, seed, wait_for
from servers.common import free_port, pid_alive

from pitr.catalog.model import SegmentIndex


@dataclass
class Story:
    site: Site
    repo: Path  # the instance's part of the file repository
    fulls: tuple[str, str]  # A, then B
    diff: str  # taken against B


def instance_state(site: Site) -> tuple[int | None, list[str], set[str]]:
    """What recover must not change when it refuses: the server process, what lies beside
    the data directory, the rows."""
    beside = sorted(p.name for p in site.server.datadir.parent.iterdir())
    return site.server_pid(), beside, site.markers()


def checkpoint_moved(site: Site) -> None:
    """Changes flushed and checkpointed: the next backup ends at a later LSN."""

    def lsns() -> dict[str, int]:
        status = str(site.sql("SHOW ENGINE INNODB STATUS")[0][2])
        return {ln.rsplit(" ", 1)[0].strip(): int(ln.split()[-1]) for ln in status.splitlines()
                if ln.startswith(("Log sequence number", "Last checkpoint at"))}  # fmt: skip

    site.sql("UPDATE shop.keep SET v = MD5(v)")
    written = lsns()["Log sequence number"]
    site.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
    wait_for(lambda: lsns()["Last checkpoint at"] >= written, 60, "an InnoDB checkpoint")
    site.sql("SET GLOBAL innodb_max_dirty_pages_pct = DEFAULT")


@pytest.fixture(scope="module")
def shared() -> Iterator[Story]:
    site = file_site(public_dir())
    try:
        seed(site, ("orders",))
        a = site.backup("full")
        mark(site, "after-a")
        checkpoint_moved(site)  # else B may end at A's LSN: the chains would be the same
        b = site.backup("full")
        mark(site, "after-b")
        d = site.backup("diff")
        assert d["parent"] == b["id"]
        mark(site, "after-d")
        site.flush()
        site.archive()
        repo = site.repo_dir / "main"  # type: ignore[attr-defined]
        keep_pristine(site, repo)
        yield Story(site, repo, (a["id"], b["id"]), d["id"])
    finally:
        site.destroy()


@pytest.fixture
def story(shared: Story) -> Story:
    """The shared story with its repository as it was after the setup (tests edit it)."""
    pristine(shared.site, shared.repo)
    return shared


def manifest(story: Story, backup_id: str) -> Path:
    return story.repo / "backups" / backup_id / "manifest.json"


def lsn(story: Story, backup_id: str, which: str) -> int:
    return int(json.loads(manifest(story, backup_id).read_text())["engine_meta"][which])


def rechain(story: Story, **changes: Any) -> None:
    """Make the differential look like A's: B's manifest gone (B is then an incomplete
    backup, invisible), the backups summary (a cache) gone, the differential's manifest
    edited — a catalog that reads as valid, with a differential that does not fit."""
    manifest(story, story.fulls[1]).unlink()
    (story.repo / "catalog" / "backups.json").unlink(missing_ok=True)
    path = manifest(story, story.diff)
    doc = json.loads(path.read_text())
    doc["parent"] = story.fulls[0]
    doc["engine_meta"].update(changes)
    path.write_text(json.dumps(doc))
    steps = story.site.ok("plan", "--latest")["plan"]["steps"]
    assert [(s["action"], s["backup"]) for s in steps[:2]] == [
        ("restore_full", story.fulls[0]),
        ("apply_diff", story.diff),
    ]


def test_a_differential_of_another_full_is_refused_from_the_manifests(story: Story) -> None:
    site, (a, b) = story.site, story.fulls
    want, got = lsn(story, a, "to_lsn"), lsn(story, story.diff, "from_lsn")
    assert got == lsn(story, b, "to_lsn") != want
    rechain(story)
    empty = site.base / "empty"
    empty.mkdir()
    done = site.fails(3, "restore", "--latest", "--to", str(empty))
    assert (f"differential {story.diff} starts at LSN {got}, but full {a} ends at LSN {want}"
            in done.stderr)  # fmt: skip
    assert not list(empty.iterdir()) and not list(site.base.glob(".empty*"))
    shutil.rmtree(empty)


def test_a_differential_whose_files_start_elsewhere_is_refused_before_prepare(
    story: Story,
) -> None:
    """The manifests agree (edited), the extracted checkpoints do not: recover refuses
    after extracting, before ``--prepare``; the instance was never stopped."""
    site, (a, b) = story.site, story.fulls
    want, got = lsn(story, a, "to_lsn"), lsn(story, b, "to_lsn")
    rechain(story, from_lsn=want)
    before = instance_state(site)
    done = site.fails(3, "recover", "--latest", "--yes")
    assert (f"differential {story.diff} starts at LSN {got}, but the "
            f"extracted full {a} ends at LSN {want}: not applying it" in done.stderr)  # fmt: skip
    assert instance_state(site) == before  # same process, nothing left beside it


def test_recover_to_a_gtid_never_written_secures_the_binlogs_then_refuses(story: Story) -> None:
    site = story.site
    mark(site, "open")  # in the open binlog: recover archives it before planning again
    before = instance_state(site)
    archived = sum(s["logs"] for s in site.ok("list")["logs"])
    done = site.fails(4, "recover", "--gtid", "0-1-99999", "--yes")
    assert "0-1-99999 is not in the archived binlogs (they hold 0-1-" in done.stderr
    held = done.stderr.split("they hold ", 1)[1].split(")", 1)[0]
    assert held.endswith(site.gtid().split("-")[-1])  # the open binlog was secured first
    closed = len(site.sql("SHOW BINARY LOGS")) - 1  # every one, the flushed one too
    assert sum(s["logs"] for s in site.ok("list")["logs"]) == closed > archived
    assert instance_state(site) == before


def _object_of(index: Path) -> Path:
    doc = json.loads(index.read_text())
    return index.parent / Path(doc["object"]["key"]).name


def test_a_replay_ending_short_of_the_target_keeps_the_replaced_directory() -> None:
    """The repository's copy of a binlog lacks its last transactions while its index still
    lists them (written so on purpose: object and checksums consistent, so only the GTID
    check after replay can tell). The server's copy was purged after archiving, as usual.
    A restore beside (replay by the SQL thread) refuses it too, leaving no relay log."""
    site = file_site(public_dir())
    site.config.write_text(site.config.read_text().replace(
        "[repository]\n", '[repository]\ncompression = "none"\n'))  # fmt: skip
    try:
        seed(site, ("orders",))
        site.backup("full")
        site.flush()
        for name in ("s-A", "s-B", "s-C"):
            mark(site, name)
        target = site.gtid()  # s-C's
        site.flush()
        site.archive()
        wait_for(lambda: purged(site), 60, "the archived binlogs to be purged")
        cut_short(_index_holding(site, target), keep=1)  # s-A stays, s-B and s-C go
        # beside first: the SQL thread applies what the short copy holds, then waits
        dest = site.base / "beside"
        done = site.run("restore", "--gtid", target, "--to", str(dest), "--port",
                        str(free_port()))  # fmt: skip
        assert done.returncode == 7, str(done)
        assert "replay did not reach the target" in done.stderr
        assert f"the restored directory is kept at {dest}" in done.stderr
        assert not any("relay" in p.name for p in dest.iterdir())
        assert not (dest / "pitr-server.pid").exists() or not pid_alive(
            int((dest / "pitr-server.pid").read_text()))  # fmt: skip
        done = site.run("recover", "--gtid", target, "--yes")
        site.server.proc = None  # pitr stopped the harness' server and started the restored one
        site.managed = True
        site.track()
        assert done.returncode == 7, str(done)
        assert "replay did not reach the target" in done.stderr and f"expected {target}" in (
            done.stderr)  # fmt: skip
        (aside,) = site.server.datadir.parent.glob("data.pitr-2*")  # not data.pitr-server.log
        assert f"the replaced data directory is kept at {aside}" in done.stderr
        assert (aside / "shop" / "orders.ibd").exists() and (aside / "mysql").is_dir()
        assert {"s-A"} == {m for m in site.markers() if m.startswith("s-")}
    finally:
        site.destroy()


def purged(site: Site) -> bool:
    """PURGE BINARY LOGS up to the open one; a binlog InnoDB still needs for crash recovery
    is kept by the server until its next checkpoint (so: try again)."""
    logs = site.sql("SHOW BINARY LOGS")
    site.sql("PURGE BINARY LOGS TO %s", str(logs[-1][0]))
    return len(site.sql("SHOW BINARY LOGS")) == 1


def _index_holding(site: Site, gtid: str) -> Path:
    for path in site.repo_dir.glob("main/logs/**/*.json"):  # type: ignore[attr-defined]
        index = SegmentIndex.from_document(json.loads(path.read_text()), str(path))
        if any(t.gtid == gtid for t in index.transactions):
            return path
    raise AssertionError(f"no index document holds {gtid}")


def cut_short(index: Path, keep: int) -> None:
    """Truncate a binlog object after the first ``keep`` transactions its index lists, and
    make the index document's object fields (size, checksums) describe the shorter object."""
    doc = json.loads(index.read_text())
    obj = _object_of(index)
    end = SegmentIndex.from_document(doc, str(index)).transactions[keep - 1].end
    assert end is not None
    data = obj.read_bytes()[: int(end.rsplit(":", 1)[1])]
    obj.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    doc["object"].update(size=len(data), raw_size=len(data), sha256=digest, raw_sha256=digest)
    index.write_text(json.dumps(doc))


def test_an_incremental_is_refused(story: Story) -> None:
    """Block-level incrementals are PostgreSQL's: a usage error, nothing published."""
    before = sorted(p.name for p in (story.repo / "backups").iterdir())
    done = story.site.fails(2, "backup", "--type", "incr")
    assert "--type incr is for PostgreSQL" in done.error
    assert sorted(p.name for p in (story.repo / "backups").iterdir()) == before
