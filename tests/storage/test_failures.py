"""Storage failures: unreachable endpoints, denied access, missing buckets, throttling."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from servers import MotoServer, SwiftServer
from servers.common import free_port

from pitr.config.settings import RepositorySettings
from pitr.errors import RepositoryError, StorageUnavailable
from pitr.storage import open_storage
from pitr.storage.base import part_size

from .conftest import unique
from .fault_proxy import FaultProxy, everything


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def s3_settings(moto: MotoServer, bucket: str, **overrides: object) -> RepositorySettings:
    values: dict[str, object] = {
        "url": f"s3://{bucket}/p",
        "endpoint_url": moto.endpoint_url,
        "region": moto.region,
        "addressing": "path",
        "timeout": 10,
    }
    values.update(overrides)
    return RepositorySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def moto_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for var, value in moto_server.env().items():
        monkeypatch.setenv(var, value)
    return moto_server


def test_s3_unreachable_endpoint_gives_up_within_budget(moto_env: MotoServer) -> None:
    settings = s3_settings(moto_env, "pitr-dead", endpoint_url=dead_endpoint(), timeout=2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as err:
        open_storage(settings).put_bytes("k", b"x")
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 6, elapsed
    assert "gave up after 2 s" in err.value.message
    assert err.value.exit_code == 5


def test_s3_missing_bucket_is_a_repository_error(moto_env: MotoServer) -> None:
    storage = open_storage(s3_settings(moto_env, unique("pitr-missing")))
    with pytest.raises(RepositoryError, match="does not exist"):
        storage.put_bytes("k", b"x")


def test_s3_missing_credentials(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = open_storage(s3_settings(moto_server, "pitr-nocreds"))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="no S3 credentials") as err:
        storage.stat("k")
    assert time.monotonic() - started < 3  # not retried
    assert err.value.hint and "AWS_ACCESS_KEY_ID" in err.value.hint


@pytest.mark.parametrize("status", [503, 429])
def test_s3_throttling_is_retried_not_failed(moto_env: MotoServer, status: int) -> None:
    bucket = unique("pitr-throttle")
    moto_env.create_bucket(bucket)
    with FaultProxy(moto_env.endpoint_url) as proxy:
        proxy.inject(everything, [str(status)], limit=3)
        storage = open_storage(s3_settings(moto_env, bucket, endpoint_url=proxy.endpoint_url))
        data = os.urandom(1000)
        assert storage.put_bytes("doc", data).sha256 == hashlib.sha256(data).hexdigest()
        assert proxy.injected[str(status)] == 3
        proxy.inject(everything, [str(status)], limit=2)
        assert storage.get_bytes("doc") == data
        assert proxy.injected[str(status)] == 5


def test_s3_throttled_multipart_upload_completes(moto_env: MotoServer) -> None:
    bucket = unique("pitr-throttle")
    moto_env.create_bucket(bucket)
    data = os.urandom(part_size(0)) * 2 + b"tail"
    with FaultProxy(moto_env.endpoint_url) as proxy:
        storage = open_storage(s3_settings(moto_env, bucket, endpoint_url=proxy.endpoint_url))
        proxy.inject(everything, ["503"], limit=4)  # some part uploads are throttled
        result = storage.put_bytes("big", data)
        assert proxy.injected["503"] == 4
    assert result.size == len(data)
    assert open_storage(s3_settings(moto_env, bucket)).get_bytes("big") == data


def test_swift_unreachable_auth_gives_up_within_budget() -> None:
    settings = RepositorySettings(
        url="swift://c/p",
        auth_url=f"{dead_endpoint()}/auth/v1.0",
        user="u:v",
        key="k",
        timeout=2,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        open_storage(settings).put_bytes("k", b"x")
    assert time.monotonic() - started < 6


def test_swift_wrong_key_is_denied_at_once(swift_server: SwiftServer) -> None:
    settings = RepositorySettings(
        url="swift://c/p",
        auth_url=swift_server.auth_url,
        user=swift_server.user,
        key="not-the-key",
        timeout=20,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="access denied"):
        list(open_storage(settings).list(""))
    assert time.monotonic() - started < 5


def test_file_repository_under_a_file_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    storage = open_storage(RepositorySettings(url=f"file://{blocker}/repo"))
    with pytest.raises(RepositoryError):
        storage.put_bytes("k", b"x")
