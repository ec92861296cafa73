"""``swift://container/prefix`` repositories through python-swiftclient.

Small streams are one PUT carrying their MD5 as ETag (Swift refuses a mismatch). Larger ones
become static large objects: segments (sizes growing with the stream, several in flight) go to
``<container>_segments`` and the manifest, which Swift checks against every segment's ETag and
size, is written last, so an interrupted upload never shows in the container's listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pitr.config.settings import SWIFT_CREDENTIALS, swift_credential
from pitr.domain.streams import Readable
from pitr.errors import (
    ConfigError,
    ObjectExists,
    ObjectNotFound,
    RepositoryError,
    StorageUnavailable,
    VerificationFailed,
)
from pitr.storage.base import (
    ChunkReader,
    ObjectInfo,
    PutResult,
    Storage,
    part_size,
    read_full,
    validate_key,
    validate_prefix,
)
from pitr.storage.retry import Transient, with_retries

if TYPE_CHECKING:
    from pitr.config.settings import RepositorySettings

#: Swift's default max_manifest_segments is 1000: grow segment sizes every 100 segments.
SEGMENTS_PER_SIZE_STEP = 100
LIST_PAGE = 1000


def connection_options(settings: RepositorySettings, env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``swiftclient.Connection`` from the config, then ST_*/OS_* vars."""
    auth_url, user, key = (swift_credential(settings, k, env) for k in SWIFT_CREDENTIALS)
    project = settings.project or env.get("OS_PROJECT_NAME") or env.get("OS_TENANT_NAME")
    version = (
        settings.auth_version
        or env.get("ST_AUTH_VERSION")
        or env.get("OS_IDENTITY_API_VERSION")
        or ("3" if project else "1")
    )
    missing = [n for n, v in (("auth_url", auth_url), ("user", user), ("key", key)) if not v]
    if missing:
        raise ConfigError(
            f"swift repository: [repository] {', '.join(missing)} not set",
            hint="set them in pitr.toml or via ST_AUTH/ST_USER/ST_KEY or OS_* variables",
        )
    os_options = {
        "project_name": project,
        "project_domain_name": settings.project_domain or env.get("OS_PROJECT_DOMAIN_NAME"),
        "user_domain_name": settings.user_domain or env.get("OS_USER_DOMAIN_NAME"),
        "region_name": settings.region_name or env.get("OS_REGION_NAME"),
    }
    return {
        "authurl": auth_url,
        "user": user,
        "key": key,
        "auth_version": version,
        "os_options": {k: v for k, v in os_options.items() if v},
        "retries": 0,  # retries are ours, bounded by the repository timeout
        "timeout": max(5.0, settings.timeout),
    }


class SwiftStorage(Storage):
    #: Swift honours ``If-None-Match: *`` against an existing object, but two concurrent
    #: writers can both succeed (eventual consistency): not an atomic create-if-absent.
    supports_create_if_absent = False

    def __init__(self, settings: RepositorySettings) -> None:
        loc = settings.location
        self.container = loc.container
        self.segments = f"{loc.container}_segments"
        self.prefix = f"{loc.prefix}/" if loc.prefix else ""
        self.budget = settings.timeout
        self.concurrency = settings.concurrency
        self._options = connection_options(settings, os.environ)
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._auth: tuple[str, str] | None = None  # storage URL and token, shared by threads

    def describe(self) -> str:
        return f"swift://{self.container}/{self.prefix}".rstrip("/")

    # -- connections and errors -------------------------------------------------------------

    def _conn(self) -> Any:
        from swiftclient.client import Connection

        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._auth_lock:
                if self._auth is None:
                    first = Connection(**self._options)
                    self._auth = self._call_auth(first)
                url, token = self._auth
            conn = Connection(**self._options, preauthurl=url, preauthtoken=token)
            self._local.conn = conn
        return conn

    def _call_auth(self, conn: Any) -> tuple[str, str]:
        def auth() -> tuple[str, str]:
            url, token = conn.get_auth()
            return str(url), str(token)

        return with_retries(
            auth,
            budget=self.budget,
            describe=f"{self.describe()}: authenticate",
            classify=lambda exc: self._classify(exc, None, auth=True),
        )

    def _call(self, what: str, fn: Callable[[Any], Any], key: str | None = None) -> Any:
        return with_retries(
            lambda: fn(self._conn()),
            budget=self.budget,
            describe=f"{self.describe()}: {what}",
            classify=lambda exc: self._classify(exc, key),
        )

    def _classify(self, exc: BaseException, key: str | None, auth: bool = False) -> BaseException:
        from requests.exceptions import RequestException
        from swiftclient.exceptions import ClientException

        if isinstance(exc, RequestException):
            return Transient(str(exc), exc)
        if not isinstance(exc, ClientException):
            return exc
        status = exc.http_status
        if status is None:  # swiftclient wraps connection failures without a status
            return Transient(str(exc), exc)
        if status == 401 and not auth:
            # The token expired: drop every thread's connection and authenticate again.
            with self._auth_lock:
                self._auth = None
            self._local.conn = None
            return Transient("token expired", exc)
        if status in (401, 403):
            return StorageUnavailable(
                f"{self.describe()}: access denied (HTTP {status})",
                hint="check the Swift user, key and project",
            )
        if status == 404:
            return ObjectNotFound(key or "?")
        if status == 412:
            return ObjectExists(key or "?")
        if status == 422:
            return VerificationFailed(f"{self.describe()}: {key}: upload corrupted in transit")
        if status in (408, 429, 498) or status >= 500:
            return Transient(f"HTTP {status} {exc.http_reason or ''}".strip(), exc)
        return RepositoryError(f"{self.describe()}: HTTP {status}: {exc.http_reason or exc}")

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        name = self.prefix + validate_key(key)
        digest = hashlib.sha256()
        first = read_full(source, part_size(0))
        digest.update(first)
        headers = {"If-None-Match": "*"} if if_absent else {}
        if len(first) < part_size(0):
            # Swift checks the ETag we send (422 on mismatch) and we compare the one it returns.
            md5 = hashlib.md5(first, usedforsecurity=False).hexdigest()
            self._put_object(key, self.container, name, first, md5, headers)
            return PutResult(key, len(first), digest.hexdigest())
        size = self._put_large(key, name, first, source, digest, headers)
        stored = self.stat(key).size
        if stored != size:
            raise VerificationFailed(f"{self.describe()}: {key}: stored {stored} bytes of {size}")
        return PutResult(key, size, digest.hexdigest())

    def _put_object(
        self,
        key: str,
        container: str,
        name: str,
        data: bytes,
        md5: str | None,
        headers: dict[str, str],
        query: str | None = None,
    ) -> None:
        def put(conn: Any) -> str:
            return str(
                conn.put_object(
                    container,
                    name,
                    data,
                    content_length=len(data),
                    etag=md5,
                    headers=headers,
                    query_string=query,
                )
            )

        try:
            etag = self._call(f"put {key}", put, key)
        except ObjectNotFound:  # the container does not exist yet: create it, then retry
            self._call(f"create container {container}", lambda c: c.put_container(container))
            etag = self._call(f"put {key}", put, key)
        if md5 is not None and etag.strip('"') != md5:
            raise VerificationFailed(f"{self.describe()}: {key}: ETag {etag} is not {md5}")

    def _put_large(
        self,
        key: str,
        name: str,
        first: bytes,
        source: Readable,
        digest: Any,
        headers: dict[str, str],
    ) -> int:
        if headers and self.exists(key):
            raise ObjectExists(key)
        base = f"{name}/{uuid.uuid4().hex}/"
        slots = threading.BoundedSemaphore(self.concurrency)
        failed = threading.Event()

        def settled(fut: Future[None]) -> None:
            if fut.exception() is not None:
                failed.set()
            slots.release()

        segments: list[dict[str, Any]] = []
        futures: list[Future[None]] = []
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="swift-seg") as pool:
                data, index = first, 0
                while data and not failed.is_set():
                    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                    path = f"{base}{index:08d}"
                    segments.append(
                        {"path": f"/{self.segments}/{path}", "etag": md5, "size_bytes": len(data)}
                    )
                    slots.acquire()
                    fut = pool.submit(self._put_object, key, self.segments, path, data, md5, {})
                    fut.add_done_callback(settled)
                    futures.append(fut)
                    index += 1
                    data = read_full(source, part_size(index, step=SEGMENTS_PER_SIZE_STEP))
                    digest.update(data)
            for fut in futures:
                fut.result()
            manifest = json.dumps(segments).encode()
            self._put_object(
                key, self.container, name, manifest, None, headers, "multipart-manifest=put"
            )
        except BaseException:
            self._delete_segments(segments)
            raise
        return sum(int(s["size_bytes"]) for s in segments)

    def _delete_segments(self, segments: list[dict[str, Any]]) -> None:
        # Best effort: orphaned segments are invisible to the container's listing.
        for seg in segments:
            with contextlib.suppress(Exception):
                self._conn().delete_object(self.segments, str(seg["path"]).split("/", 2)[2])

    # -- reads ----------------------------------------------------------------------------

    def open(self, key: str) -> io.RawIOBase:
        name = self.prefix + validate_key(key)
        _, body = self._call(
            f"get {key}",
            lambda c: c.get_object(self.container, name, resp_chunk_size=1024 * 1024),
            key,
        )
        return ChunkReader(iter(body), close=getattr(body, "close", None))

    def stat(self, key: str) -> ObjectInfo:
        name = self.prefix + validate_key(key)
        headers = self._call(f"stat {key}", lambda c: c.head_object(self.container, name), key)
        return ObjectInfo(key, int(headers["content-length"]))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        marker = self.prefix + start_after if start_after else ""
        strip = len(self.prefix)
        while True:

            def page_after(c: Any, marker: str = marker) -> Any:
                return c.get_container(
                    self.container, marker=marker, limit=LIST_PAGE, prefix=self.prefix + prefix
                )

            try:
                _, page = self._call(f"list {prefix or '/'}", page_after)
            except ObjectNotFound:  # no container yet: an empty repository
                return
            for item in page:
                yield ObjectInfo(item["name"][strip:], int(item["bytes"]))
            if len(page) < LIST_PAGE:
                return
            marker = page[-1]["name"]

    def list_prefixes(self, prefix: str) -> tuple[str, ...]:
        validate_prefix(prefix)
        marker = ""
        strip = len(self.prefix)
        found: list[str] = []
        while True:

            def page_after(c: Any, marker: str = marker) -> Any:
                return c.get_container(
                    self.container,
                    marker=marker,
                    limit=LIST_PAGE,
                    prefix=self.prefix + prefix,
                    delimiter="/",
                )

            try:
                _, page = self._call(f"list {prefix or '/'}", page_after)
            except ObjectNotFound:
                return ()
            found.extend(item["subdir"][strip:] for item in page if "subdir" in item)
            if len(page) < LIST_PAGE:
                return tuple(sorted(found))
            last = page[-1]
            marker = last.get("subdir") or last["name"]

    def delete(self, key: str) -> None:
        name = self.prefix + validate_key(key)
        try:
            headers = self._call(f"stat {key}", lambda c: c.head_object(self.container, name), key)
            # A large object's manifest delete also removes its segments; on a plain object
            # that query is answered 200 without deleting anything.
            slo = headers.get("x-static-large-object", "").lower() == "true"
            query = "multipart-manifest=delete" if slo else None
            self._call(
                f"delete {key}",
                lambda c: c.delete_object(self.container, name, query_string=query),
                key,
            )
        except ObjectNotFound:
            return
