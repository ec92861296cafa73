"""The catalog in real file and S3 repositories: publication, summaries, damage, and the
commands that read it (list, plan, verify, expire, status, catalog rebuild)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from catalogs import minute

from pitr.catalog.model import SegmentIndex
from pitr.catalog.store import CatalogStore
from pitr.catalog.summary import compact, page_refs
from pitr.commands.locks import InstanceLock
from pitr.commands.plan import make_plan
from pitr.config.settings import RepositorySettings
from pitr.domain.targets import parse_target
from pitr.errors import FormatError, RepositoryError
from pitr.storage import Storage

from .conftest import unique
from .publish import backup, publish_backup, publish_segment, wal

pytestmark = pytest.mark.parametrize("repo_settings", ["file", "s3"], indirect=True)


@pytest.fixture
def store(storage: Storage) -> CatalogStore:
    return CatalogStore(storage, "main", "postgresql")


def populate(store: CatalogStore, segments: range = range(12)) -> None:
    publish_backup(store, backup("F1", 1))
    publish_backup(store, backup("D1", 4, kind="diff", parent="F1"))
    publish_backup(store, backup("F2", 7))
    for n in segments:
        publish_segment(store, wal(n))


def test_published_catalog_reads_back(store: CatalogStore) -> None:
    populate(store)
    catalog = store.load()
    assert [b.id for b in catalog.backups] == ["F1", "D1", "F2"]
    run = catalog.streams["00000001"]
    assert [s.name for s in run] == [wal(n).name for n in range(12)]
    assert run[3].xid_min == 300 and run[3].object.raw_sha256
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert plan.recoverable, plan.problems
    assert plan.full is not None and plan.full.id == "F2"


def test_pushing_the_same_segment_twice(store: CatalogStore) -> None:
    first = publish_segment(store, wal(3))
    assert store.publish_segment(SegmentIndex(first)) is False  # same content: fine
    different = first.object.__class__(
        first.object.key, 1, "f" * 64, 1, "zstd", raw_sha256="e" * 64
    )
    with pytest.raises(RepositoryError, match="different content"):
        store.publish_segment(
            SegmentIndex(first.__class__(**{**first.__dict__, "object": different}))
        )


def test_summary_pages_and_tail(store: CatalogStore) -> None:
    populate(store, range(0, 8))
    assert compact(store.storage, store.layout, "00000001") == 8
    assert [r.last for r in page_refs(store.storage, store.layout)["00000001"]] == [wal(7).name]
    for n in range(8, 12):  # the tail, not yet in a page
        publish_segment(store, wal(n))
    names = [s.name for s in store.load().streams["00000001"]]
    assert names == [wal(n).name for n in range(12)]
    assert compact(store.storage, store.layout, "00000001") == 4
    assert compact(store.storage, store.layout, "00000001") == 0
    assert len(store.load().streams["00000001"]) == 12


def test_wal_grouped_by_4_gb_across_pages_and_tail(store: CatalogStore) -> None:
    """WAL objects live in one directory per 4 GB (256 segments of 16 MB): listings of a long
    stream read a small directory, and pages, tail and plan work across the boundary."""
    segments = range(250, 262)
    publish_backup(store, backup("F1", 250))
    for n in range(250, 258):
        publish_segment(store, wal(n))
    compact(store.storage, store.layout, "00000001")
    for n in range(258, 262):
        publish_segment(store, wal(n))
    assert wal(255).object.key.startswith("main/logs/00000001/0000000100000000/")
    assert wal(256).object.key.startswith("main/logs/00000001/0000000100000001/")
    assert store.storage.list_prefixes("main/logs/00000001/") == (
        "main/logs/00000001/0000000100000000/",
        "main/logs/00000001/0000000100000001/",
    )
    run = store.load().streams["00000001"]
    assert [s.name for s in run] == [wal(n).name for n in segments]
    assert [s.object.key for s in run] == [wal(n).object.key for n in segments]
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert plan.recoverable, plan.problems
    store.storage.delete(wal(257).object.key)  # in a page, beyond the boundary
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert not plan.recoverable
    assert any(wal(257).name in p for p in plan.problems)


def test_interrupted_backup_is_invisible(store: CatalogStore) -> None:
    populate(store)
    publish_backup(store, backup("F3", 10), manifest=False)  # killed before its manifest
    assert [b.id for b in store.load().backups] == ["F1", "D1", "F2"]
    assert list(store.list_backups().orphans) == ["F3"]
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert plan.full is not None and plan.full.id == "F2"


def test_corrupt_manifest_is_named(store: CatalogStore) -> None:
    populate(store)
    key = store.layout.manifest("F2")
    store.storage.put_bytes(key, store.storage.get_bytes(key)[:100])  # truncated
    store.storage.delete(store.layout.backups_summary)
    with pytest.raises(FormatError, match=re.escape(f"{key}: corrupt catalog document")):
        store.load()


def test_newer_format_is_refused(store: CatalogStore) -> None:
    populate(store)
    key = store.layout.log_index("00000001", wal(5).name)
    doc = json.loads(store.storage.get_bytes(key))
    doc["format"] = "2.0"
    store.storage.put_bytes(key, json.dumps(doc).encode())
    with pytest.raises(FormatError, match=r"catalog format 2\.0 is not supported") as err:
        store.load()
    assert err.value.exit_code == 3


def test_plan_names_a_data_object_gone_while_its_index_remains(store: CatalogStore) -> None:
    populate(store)
    gone = wal(9)
    store.storage.delete(gone.object.key)
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert not plan.recoverable
    assert any(gone.name in p and "data object" in p for p in plan.problems)


# --- the commands, as scripts run them ---------------------------------------------------


def cli(
    repo: RepositorySettings, tmp_path: Path, *args: str, tables: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """``pitr ARGS`` with the repository, ``[retention] full = 1`` and ``tables``."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in repo.__dict__.items() if v is not None]
    config = tmp_path / "pitr.toml"
    config.write_text(
        "[repository]\n" + "\n".join(lines) + "\n[retention]\nfull = 1\n"
        f'{tables}\n[instances.main]\nengine = "postgresql"\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "pitr", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), **env},
    )


def test_list_plan_verify_status_commands(
    store: CatalogStore, repo_settings: RepositorySettings, tmp_path: Path
) -> None:
    populate(store)
    listing = json.loads(cli(repo_settings, tmp_path, "list", "--json").stdout)
    assert [b["id"] for b in listing["backups"]] == ["F1", "D1", "F2"]
    assert listing["backups"][1]["parent"] == "F1"
    assert listing["logs"][0]["logs"] == 12
    assert listing["window"]["earliest"] == "2026-03-01T00:01:55+00:00"

    at = (minute(5) + timedelta(seconds=20)).isoformat()
    done = cli(repo_settings, tmp_path, "plan", "--at", at, "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert [s["action"] for s in plan["steps"]] == ["restore_full", "apply_diff", "replay_logs"]
    assert plan["steps"][2]["logs"][-1] == wal(5).name

    done = cli(repo_settings, tmp_path, "plan", "--at", minute(0).isoformat(), "--json")
    assert done.returncode == 4
    assert json.loads(done.stdout)["plan"]["recoverable"] is False
    assert done.stderr.startswith("error: not recoverable: no backup")

    done = cli(repo_settings, tmp_path, "verify", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == []

    key = wal(6).object.key
    store.storage.put_bytes(key, b"garbage")
    done = cli(repo_settings, tmp_path, "verify", "--json")
    assert done.returncode == 8
    assert json.loads(done.stdout)["failed"][0]["key"] == key
    assert key in done.stderr

    done = cli(repo_settings, tmp_path, "status", "--json")
    assert done.returncode == 2  # the test data is months old: CRIT
    assert json.loads(done.stdout)["status"] == "CRIT"


@pytest.mark.parametrize(
    ("thresholds", "code", "states"),
    [
        (  # a backup a year old is fine, and an archive a year behind
            "backup_warn_hours = 1e5\nbackup_crit_hours = 2e5\n"
            "archive_warn_minutes = 1e7\narchive_crit_minutes = 2e7",
            0,
            {"backup": "OK", "archive": "OK"},
        ),
        (  # the backup is older than WARN's 2 h, not than CRIT's
            "backup_warn_hours = 2\nbackup_crit_hours = 2e5\n"
            "archive_warn_minutes = 1e7\narchive_crit_minutes = 2e7",
            1,
            {"backup": "WARN", "archive": "OK"},
        ),
        (  # the archive is older than WARN's 30 min, not than CRIT's
            "backup_warn_hours = 1e5\nbackup_crit_hours = 2e5\n"
            "archive_warn_minutes = 30\narchive_crit_minutes = 2e7",
            1,
            {"backup": "OK", "archive": "WARN"},
        ),
    ],
)
def test_status_thresholds_from_the_config(
    store: CatalogStore,
    repo_settings: RepositorySettings,
    tmp_path: Path,
    thresholds: str,
    code: int,
    states: dict[str, str],
) -> None:
    populate(store)
    state = ["OK", "WARN", "CRIT"][code]
    done = cli(repo_settings, tmp_path, "status", "--json", tables=f"[status]\n{thresholds}")
    assert done.returncode == code, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == state
    assert {c["name"]: c["status"] for c in doc["checks"]} == states
    text = cli(repo_settings, tmp_path, "status", tables=f"[status]\n{thresholds}")
    assert text.returncode == code
    assert text.stdout.startswith(f"PITR {state} - backup {states['backup']}: last backup F2, ")


def test_verify_an_unknown_backup_is_a_usage_error(
    store: CatalogStore, repo_settings: RepositorySettings, tmp_path: Path
) -> None:
    populate(store)
    done = cli(repo_settings, tmp_path, "verify", "--backup", "NOPE")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: unknown backup 'NOPE' (newest: F1, D1, F2)",
        "HINT: 'pitr list' shows every backup id",
    ]
    # A differential whose full is gone: the catalog is damaged, not the input.
    store.storage.delete(store.layout.manifest("F1"))
    store.storage.delete(store.layout.backups_summary)
    done = cli(repo_settings, tmp_path, "verify", "--backup", "D1")
    assert done.returncode == 3
    assert done.stderr.splitlines()[0] == (
        "error: backup 'F1', the parent of D1, is not in the catalog"
    )


def test_expire_and_rebuild_commands(
    store: CatalogStore, repo_settings: RepositorySettings, tmp_path: Path
) -> None:
    populate(store)
    compact(store.storage, store.layout, "00000001")  # expiry rewrites the pages too
    publish_backup(store, backup("F3", 10), manifest=False)
    # A dry run is a read: it needs no lock (another run holds it here) and writes nothing.
    with InstanceLock(store.storage, "main", str(tmp_path / "other-run"), "backup"):
        objects = list(store.storage.list())
        done = cli(repo_settings, tmp_path, "expire", "--dry-run", "--json")
        assert done.returncode == 0, done.stderr
        assert list(store.storage.list()) == objects
    dry = json.loads(done.stdout)
    assert dry["expired_backups"] == ["F1", "D1"]
    assert dry["kept"] == ["F2"]
    assert dry["expired_logs"] == [wal(n).name for n in range(7)]
    assert dry["unfinished_backups"] == ["F3"]
    done = cli(repo_settings, tmp_path, "expire", "--json")
    assert done.returncode == 0, done.stderr
    catalog = store.load()
    assert [b.id for b in catalog.backups] == ["F2"]
    assert [s.name for s in catalog.streams["00000001"]] == [wal(n).name for n in range(7, 12)]
    (page,) = page_refs(store.storage, store.layout)["00000001"]
    assert (page.first, page.last) == (wal(7).name, wal(11).name)
    assert store.list_backups().orphans == {}
    assert not list(store.storage.list("main/backups/F1/"))

    store.storage.delete(store.layout.backups_summary)
    done = cli(repo_settings, tmp_path, "catalog", "rebuild", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"backups": 1, "logs": 5, "streams": 1}
    plan = make_plan(store, parse_target("postgresql", latest=True))
    assert plan.recoverable


def test_unknown_instance(repo_settings: RepositorySettings, tmp_path: Path) -> None:
    done = cli(repo_settings, tmp_path, "list", "--instance", unique("nope"))
    assert done.returncode == 2
    assert "unknown instance" in done.stderr
