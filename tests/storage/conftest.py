"""Every storage driver, against a real backend: a file directory, moto's S3 server, Swift."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import MotoServer, SwiftServer

from pitr.config.settings import RepositorySettings
from pitr.storage import Storage, open_storage

DRIVERS = ("file", "s3", "swift")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RepositorySettings:
    """Settings for a fresh, empty repository on the driver named by the test's parameter."""
    driver = request.param
    if driver == "file":
        return RepositorySettings(url=f"file://{tmp_path}/repo", timeout=5)
    if driver == "s3":
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket = unique("pitr-test")
        moto.create_bucket(bucket)
        for var, value in moto.env().items():
            monkeypatch.setenv(var, value)
        return RepositorySettings(
            url=f"s3://{bucket}/some/prefix",
            endpoint_url=moto.endpoint_url,
            region=moto.region,
            addressing="path",
            timeout=10,
        )
    swift: SwiftServer = request.getfixturevalue("swift_server")
    return RepositorySettings(
        url=f"swift://{unique('pitr-test')}/some/prefix",
        auth_url=swift.auth_url,
        user=swift.user,
        key=swift.key,
        timeout=10,
    )


@pytest.fixture
def storage(repo_settings: RepositorySettings) -> Iterator[Storage]:
    yield open_storage(repo_settings)
