"""Client-side encryption with PostgreSQL (docs/encryption.md): a marker written into a table
and into a DDL statement is nowhere in the repository's raw bytes; the PITR story passes with
encryption on; the age CLI (and zstd) recovers a WAL segment and a backup part by hand; a host
without the identity plans but cannot read contents; enabling encryption on a plaintext
repository and rotating the recipients keep every object readable; on Swift, the story
recovered in place."""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from pg_e2e import (
    Site,
    assert_at_point,
    before_target,
    damage,
    destroy_site,
    drop_xid,
    make_site,
    markers,
    public_dir,
    seed,
)
from servers import SwiftServer

MARKER = "zq_marker_5b1e9c"


def keygen(path: Path) -> str:
    """A new identity at ``path`` (``age-keygen``); its public key."""
    done = subprocess.run(
        ["age-keygen", "-o", str(path)], capture_output=True, text=True, check=True
    )
    path.chmod(0o600)
    return done.stderr.split()[-1]


def repository_body(repo: Path, recipients: list[str], identity: Path | None) -> str:
    listed = ", ".join(f'"{r}"' for r in recipients)
    body = f'url = "file://{repo}"\nencryption = "age"\nrecipients = [{listed}]\n'
    return body + (f'identity_file = "{identity}"\n' if identity else "")


def reconfigure(site: Site, body: str) -> None:
    text = site.config.read_text()
    head, _, rest = text.partition("[repository]\n")
    site.config.write_text(head + "[repository]\n" + body + "\n" + rest[rest.index("[instances") :])


@pytest.fixture
def sealed_site() -> Iterator[tuple[Site, Path]]:
    """A cluster archiving into an encrypted file repository; the identity file beside it."""
    base = public_dir()
    repo = base / "repo"
    repo.mkdir(mode=0o777)
    repo.chmod(0o777)
    identity = base / "identity.txt"
    public = keygen(identity)
    site = make_site(base, repository_body(repo, [public], identity), file_repo=repo)
    try:
        yield site, identity
    finally:
        destroy_site(site)


def contents(repo: Path) -> Iterator[tuple[Path, bytes]]:
    """Every object's bytes, and what they decompress to when they are a zstd frame."""
    for path in sorted(p for p in repo.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data
        with contextlib.suppress(zstandard.ZstdError):
            yield path, zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def test_nothing_readable_in_the_repository_and_the_story_passes(
    sealed_site: tuple[Site, Path],
) -> None:
    site, identity = sealed_site
    repo = site.repo_dir
    assert repo is not None
    seed(site, ("victim",))
    site.sql(f"CREATE TABLE {MARKER}_table (v text)")
    site.sql(f"INSERT INTO {MARKER}_table VALUES (%s)", f"row {MARKER}")
    site.backup("full")
    point = before_target(site, "enc", "victim")
    damage(site, point)
    segment = site.archive_now()
    events = site.ok("events")["events"]
    assert any(MARKER in e["summary"] for e in events)  # with the identity: readable
    checks = {c["name"]: c for c in site.ok("check")["checks"]}
    assert "probe decrypted" in checks["encryption probe"]["detail"], checks
    assert "primitives from libsodium" in checks["encryption recipients"]["detail"], checks
    found = [str(p) for p, data in contents(repo) if MARKER.encode() in data]
    assert not found, f"the marker is readable in {found}"

    with site.restore(*point.option("at")) as (_, cluster):
        assert_at_point(cluster, point)
        assert cluster.one(f"SELECT v FROM {MARKER}_table") == f"row {MARKER}"

    # By hand: age, then zstd, into the original WAL segment and backup part.
    wal = next(repo.rglob(f"{segment}.zst.age"))
    plain = subprocess.run(
        f"age -d -i {identity} {wal} | zstd -d -c", shell=True, capture_output=True, check=True
    ).stdout
    assert len(plain) == 16 << 20 and plain[:2] in (b"\x10\xd1", b"\x11\xd1")
    part = next(p for p in repo.rglob("*.age") if "/backups/" in str(p))
    tar = subprocess.run(
        f"age -d -i {identity} {part} | zstd -d -c | tar -t",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "PG_VERSION" in tar or "base/" in tar


def test_without_the_identity_writers_work_readers_refuse(
    sealed_site: tuple[Site, Path],
) -> None:
    site, identity = sealed_site
    seed(site, ("victim",))
    site.sql(f"CREATE TABLE {MARKER}_t (v text)")
    site.backup("full")
    point = before_target(site, "w", "victim")
    site.archive_now()
    public = identity.read_text().split("public key: ")[1].split()[0]
    assert site.repo_dir is not None
    reconfigure(site, repository_body(site.repo_dir, [public], None))
    site.backup("diff")  # a writer needs only the recipients
    assert site.ok("plan", *point.option("xid"))["plan"]["recoverable"]
    assert site.ok("list")["backups"]
    verified = site.ok("verify")
    assert verified["failed"] == [] and verified["contents_checked"] is False
    done = site.fails(2, "events")
    assert "identity_file" in done.error
    dest = site.base / "nope"
    done = site.fails(2, "restore", *point.option("xid"), "--to", str(dest))
    assert "identity_file" in done.error
    assert not dest.exists() or not any(dest.iterdir())
    assert MARKER not in done.stderr
    pid = site.server.postmaster_pid()
    done = site.fails(2, "recover", *point.option("xid"), "--yes")  # before the stop
    assert "identity_file" in done.error
    assert site.server.postmaster_pid() == pid and site.one("SELECT 1") == 1
    checks = {c["name"]: c for c in site.ok("check")["checks"]}
    assert checks["encryption probe"]["ok"], checks
    assert "not decrypted" in checks["encryption probe"]["detail"]


def test_plaintext_then_encrypted_then_rotated(sealed_site: tuple[Site, Path]) -> None:
    """One repository: plaintext objects, then objects for key 1, then for key 2; a reader
    holding both identities restores across all of them."""
    site, identity = sealed_site
    repo = site.repo_dir
    assert repo is not None
    reconfigure(site, f'url = "file://{repo}"\n')
    seed(site, ("victim",))
    site.backup("full")
    site.archive_now()
    public1 = identity.read_text().split("public key: ")[1].split()[0]
    reconfigure(site, repository_body(repo, [public1], identity))
    site.sql("INSERT INTO keep VALUES (-1, 'under key 1')")
    site.backup("diff")
    site.archive_now()
    second = site.base / "identity2.txt"
    public2 = keygen(second)
    both = site.base / "both.txt"
    both.write_text(identity.read_text() + second.read_text())
    reconfigure(site, repository_body(repo, [public2], both))
    point = before_target(site, "rot", "victim")
    damage(site, point)
    site.archive_now()
    names = [p.name for p in repo.rglob("0000000*") if not p.name.endswith(".json")]
    assert any(n.endswith(".zst") for n in names) and any(n.endswith(".zst.age") for n in names)
    with site.restore(*point.option("lsn")) as (_, cluster):
        assert_at_point(cluster, point)
        assert cluster.one("SELECT v FROM keep WHERE id = -1") == "under key 1"
    assert site.ok("verify")["failed"] == []
    # Key 1 alone cannot read what key 2 protects: named, exit 2.
    reconfigure(site, repository_body(repo, [public2], identity))
    done = site.fails(2, "restore", *point.option("lsn"), "--to", str(site.base / "x"))
    assert f"no identity in {identity}" in done.error


def test_swift_story_recovered_in_place(swift_server: SwiftServer) -> None:
    """Encrypted on Swift: find the DROP with ``events``, recover in place to just before it
    (the identity readable by ``postgres`` only, as ``restore_command`` needs it), the data
    checked; every object stored is an age file and the new timeline is archived encrypted."""
    base = public_dir()
    identity = base / "identity.txt"
    public = keygen(identity)
    postgres = pwd.getpwnam("postgres")
    os.chown(identity, postgres.pw_uid, postgres.pw_gid)
    container = f"pitr-pg-age-{uuid.uuid4().hex[:10]}"
    repository = (
        f'url = "swift://{container}/prod/pg"\nencryption = "age"\n'
        f'recipients = ["{public}"]\nidentity_file = "{identity}"'
    )
    site = make_site(base, repository, env=swift_server.env())
    try:
        seed(site, ("victim",))
        full = site.backup("full")
        point = before_target(site, "swa", "victim")
        damage(site, point)
        site.archive_now()
        target = ("--xid", str(drop_xid(site, "victim")), "--exclusive")
        doc = site.ok("recover", *target, "--yes")["recovery"]
        assert doc["recovered_from_backup"] == full["id"] and doc["timeline"] == 2
        assert {"swa-A", "swa-B", "swa-C"} <= markers(site)
        assert site.checksum(point.victim) == point.checksum
        site.archive_now()
        latest = site.ok("plan", "--latest")["plan"]
        assert latest["recoverable"] is True and latest["timeline"] == 2
        _, listing = swift_server.connection().get_container(container, full_listing=True)
        data = [o["name"] for o in listing if not o["name"].endswith(".json")]
        assert any("/backups/" in n for n in data) and any(".history" in n for n in data)
        assert all(n.endswith(".age") for n in data if "/backups/" in n or "/logs/" in n), data
    finally:
        destroy_site(site)
