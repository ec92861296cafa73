"""Encrypted objects over the real drivers: nothing readable is stored, ``age -d | zstd -d``
gives the original back, verification with and without an identity, and S3 server-side
encryption on every put (single and multipart) against moto."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pitr.config.settings import RepositorySettings
from pitr.crypt import install
from pitr.crypt.age import Identity
from pitr.crypt.keyring import Keyring, WrongIdentity
from pitr.errors import VerificationFailed
from pitr.storage import Storage, open_storage
from pitr.storage.transfer import Compression, download, upload, verify

from .conftest import DRIVERS

MARKER = b"pitr-secret-marker-7f3a"
DATA = b"".join(b"%s row %08d\n" % (MARKER, i) for i in range(300_000))  # ~10 MB


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[tuple[Path, Keyring]]:
    identity = Identity.generate()
    path = tmp_path / "identity.txt"
    path.write_text(f"# test key\n{identity}\n")
    keyring = Keyring((identity.recipient(),), str(path))
    install(keyring)
    yield path, keyring
    install(None)


@pytest.mark.parametrize("repo_settings", DRIVERS, indirect=True)
def test_encrypted_round_trip_and_by_hand(
    storage: Storage, keys: tuple[Path, Keyring], tmp_path: Path
) -> None:
    stored = upload(storage, "t/obj.zst.age", io.BytesIO(DATA), Compression(encrypt=True))
    assert stored.encryption == "age" and stored.raw_size == len(DATA)
    raw = storage.get_bytes("t/obj.zst.age")
    assert raw.startswith(b"age-encryption.org/v1\n") and MARKER not in raw
    out = io.BytesIO()
    assert download(storage, stored, out) == len(DATA) and out.getvalue() == DATA
    # A DBA without pitr: age, then zstd.
    (tmp_path / "obj.zst.age").write_bytes(raw)
    plain = subprocess.run(
        f"age -d -i {keys[0]} {tmp_path / 'obj.zst.age'} | zstd -d -c",
        shell=True,
        capture_output=True,
        check=True,
    )
    assert plain.stdout == DATA


@pytest.mark.parametrize("repo_settings", ["file"], indirect=True)
def test_verify_without_and_with_an_identity(storage: Storage, keys: tuple[Path, Keyring]) -> None:
    stored = upload(storage, "t/obj", io.BytesIO(DATA), Compression(encrypt=True))
    writer_only = Keyring(keys[1].recipients)
    install(writer_only)
    verify(storage, stored, contents=False)  # sizes and stored checksum, no key needed
    data = bytearray(storage.get_bytes("t/obj"))
    data[-200] ^= 1
    storage.put_bytes("t/obj", bytes(data))
    with pytest.raises(VerificationFailed, match="sha256"):
        verify(storage, stored, contents=False)
    install(keys[1])
    # Same bytes, recorded checksum updated: only decryption can tell.
    forged = dataclasses.replace(stored, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(VerificationFailed, match="authenticate"):
        verify(storage, forged)


@pytest.mark.parametrize("repo_settings", ["file"], indirect=True)
def test_another_identity_is_named(
    storage: Storage, keys: tuple[Path, Keyring], tmp_path: Path
) -> None:
    stored = upload(storage, "t/obj", io.BytesIO(b"x" * 1000), Compression(encrypt=True))
    other = tmp_path / "other.txt"
    other.write_text(f"{Identity.generate()}\n")
    install(Keyring(keys[1].recipients, str(other)))
    with pytest.raises(WrongIdentity, match=f"t/obj: no identity in {other}"):
        download(storage, stored, io.BytesIO())


@pytest.mark.parametrize("sse", [("AES256", None), ("aws:kms", "pitr-test-key")])
@pytest.mark.parametrize("repo_settings", ["s3"], indirect=True)
def test_s3_server_side_encryption_on_every_put(
    repo_settings: RepositorySettings, sse: tuple[str, str | None]
) -> None:
    settings = dataclasses.replace(repo_settings, sse=sse[0], sse_kms_key_id=sse[1])  # type: ignore[arg-type]
    storage = open_storage(settings)
    storage.put_bytes("small", b"x" * 100)
    big = os.urandom(9 << 20)  # more than one part: a multipart upload
    storage.put("big", io.BytesIO(big))
    client = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    loc = settings.location
    for key in ("small", "big"):
        head = client.head_object(Bucket=loc.container, Key=f"{loc.prefix}/{key}")
        assert head["ServerSideEncryption"] == sse[0]
        if sse[1]:
            assert sse[1] in head["SSEKMSKeyId"]
    assert storage.get_bytes("big") == big
