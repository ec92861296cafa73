"""``s3://bucket/prefix`` repositories through boto3.

Streams of unknown length are uploaded in parts whose size grows with the stream (see
``part_size``), several parts in flight at once; every part carries its Content-MD5 (checked by
the server) and its returned ETag is compared with ours; the final object's size is confirmed
before the upload counts as written. Retries are ours (tenacity), not botocore's, so that the
time budget is one number.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pitr.domain.streams import Readable
from pitr.errors import (
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
from pitr.storage.resume import ResumingReader
from pitr.storage.retry import Transient, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from pitr.config.settings import RepositorySettings

_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "429",
}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3Storage(Storage):
    def __init__(self, settings: RepositorySettings) -> None:
        import boto3
        from botocore.config import Config

        loc = settings.location
        self.bucket = loc.container
        self.prefix = f"{loc.prefix}/" if loc.prefix else ""
        self.budget = settings.timeout
        self.concurrency = settings.concurrency
        self.sse = _sse_arguments(settings)
        # S3 returns no MD5 as the ETag of an object under SSE-KMS: Content-MD5 remains.
        self.etags_are_md5 = settings.sse != "aws:kms"
        connect = max(1.0, min(5.0, settings.timeout / 3))
        config = Config(
            region_name=settings.region,
            s3={"addressing_style": settings.addressing},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=connect,
            read_timeout=60,
            max_pool_connections=settings.concurrency + 4,
            # Content-MD5 per request is what we verify; leave the SDK's own checksums off
            # where not required (S3-compatible servers reject some of them).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(profile_name=settings.profile)
        self.client: S3Client = session.client(
            "s3", endpoint_url=settings.endpoint_url, config=config
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, what: str, fn: Callable[[], Any], key: str | None = None) -> Any:
        return with_retries(
            fn,
            budget=self.budget,
            describe=f"{self.describe()}: {what}",
            classify=lambda exc: self._classify(exc, key),
        )

    def _classify(self, exc: BaseException, key: str | None) -> BaseException:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailable(
                f"{self.describe()}: no S3 credentials found",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an instance role",
            )
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            return Transient(str(exc), exc)
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _MISSING_CODES or (status == "404" and code != "NoSuchBucket"):
                return ObjectNotFound(key or "?")
            if code == "NoSuchBucket":
                return RepositoryError(
                    f"{self.describe()}: bucket {self.bucket!r} does not exist",
                    hint="create the bucket, or fix [repository] url",
                )
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == "412":
                return ObjectExists(key or "?")
            if code in _TRANSIENT_CODES or status in _TRANSIENT_CODES:
                return Transient(f"{code or status}: {err.get('Message', '')}".strip(), exc)
            if code in _DENIED_CODES or status == "403":
                return StorageUnavailable(
                    f"{self.describe()}: access denied ({code})",
                    hint="check the credentials and the bucket policy",
                )
            if code == "BadDigest":
                return VerificationFailed(f"{self.describe()}: {key}: upload corrupted in transit")
            return RepositoryError(f"{self.describe()}: {code}: {err.get('Message', '')}")
        return exc

    # -- writes ---------------------------------------------------------------------------

    def put(self, key: str, source: Readable, *, if_absent: bool = False) -> PutResult:
        full = self._key(key)
        digest = hashlib.sha256()
        first = read_full(source, part_size(0))
        digest.update(first)
        if len(first) < part_size(0):
            # The server checked the Content-MD5 and we checked the ETag: size and content
            # are confirmed without another request.
            self._put_single(key, full, first, if_absent)
            return PutResult(key, len(first), digest.hexdigest())
        return self._put_multipart(key, full, first, source, digest, if_absent)

    def _put_single(self, key: str, full: str, data: bytes, if_absent: bool) -> None:
        md5 = hashlib.md5(data, usedforsecurity=False)
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}
        extra.update(self.sse)
        attempts = Attempts(
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                **extra,
            )
        )
        try:
            response = self._call(f"put {key}", attempts, key)
        except ObjectExists:
            if not (attempts.count > 1 and self._ours(key, md5.hexdigest(), len(data))):
                raise
            return
        if self.etags_are_md5:
            _check_etag(response.get("ETag"), md5.hexdigest(), key)

    def _ours(self, key: str, etag: str, size: int) -> bool:
        """After a retried create-if-absent write found ``key`` there: is it the object an
        earlier attempt wrote (its answer lost on the way back), same ETag and size?"""
        full = self._key(key)
        head = self._call(
            f"stat {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=full), key
        )
        return str(head.get("ETag", "")).strip('"') == etag and head["ContentLength"] == size

    def _put_multipart(
        self,
        key: str,
        full: str,
        first: bytes,
        source: Readable,
        digest: Any,
        if_absent: bool,
    ) -> PutResult:
        if if_absent and self.exists(key):  # before uploading it all: the usual refusal
            raise ObjectExists(key)
        upload_id: str = self._call(
            f"start upload {key}",
            lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=full, **self.sse),
            key,
        )["UploadId"]
        slots = threading.BoundedSemaphore(self.concurrency)
        failed = threading.Event()

        def settled(fut: Future[str]) -> None:
            if fut.exception() is not None:
                failed.set()
            slots.release()

        md5s: list[bytes] = []
        futures: list[Future[str]] = []
        size = 0
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part") as pool:
                data, index = first, 0
                while data and not failed.is_set():
                    md5 = hashlib.md5(data, usedforsecurity=False).digest()
                    md5s.append(md5)
                    size += len(data)
                    slots.acquire()
                    fut = pool.submit(self._upload_part, key, full, upload_id, index + 1, data, md5)
                    fut.add_done_callback(settled)
                    futures.append(fut)
                    index += 1
                    data = read_full(source, part_size(index))
                    digest.update(data)
            for fut in futures:
                fut.result()  # the first failed part's error, if any
            etags = [f.result() for f in futures]
            parts = [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]
            extra: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}  # and atomic
            attempts = Attempts(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    **extra,
                )
            )
            combined = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest()
            etag = f"{combined}-{len(md5s)}"
            try:
                response = self._call(f"complete upload {key}", attempts, key)
            except (ObjectExists, ObjectNotFound):  # completed by an attempt whose answer
                if not (attempts.count > 1 and self._ours(key, etag, size)):  # was lost?
                    raise
                response = {"ETag": etag}
        except BaseException:
            self._abort(full, upload_id)
            raise
        if self.etags_are_md5:
            _check_etag(response.get("ETag"), etag, key)
        self._confirm_size(key, full, size)
        return PutResult(key, size, digest.hexdigest())

    def _upload_part(
        self, key: str, full: str, upload_id: str, number: int, data: bytes, md5: bytes
    ) -> str:
        response = self._call(
            f"upload part {number} of {key}",
            lambda: self.client.upload_part(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5).decode(),
            ),
            key,
        )
        etag: str = response["ETag"]
        if self.etags_are_md5:
            _check_etag(etag, md5.hex(), key)
        return etag

    def _abort(self, full: str, upload_id: str) -> None:
        # Best effort: an upload never completed stays invisible either way.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    def _confirm_size(self, key: str, full: str, size: int) -> None:
        stored = self.stat(key).size
        if stored != size:
            raise VerificationFailed(f"{self.describe()}: {key}: stored {stored} bytes of {size}")

    # -- reads ----------------------------------------------------------------------------

    def open(self, key: str) -> io.RawIOBase:
        """The object's bytes; a body cut short is resumed from where it broke (a ranged
        GET of the same version: ``If-Match`` its ETag)."""
        full = self._key(key)
        etag: list[str] = []

        def open_at(offset: int) -> tuple[io.RawIOBase, int]:
            extra: dict[str, Any] = (
                {"Range": f"bytes={offset}-", "IfMatch": etag[0]} if offset else {}
            )
            response = self._call(
                f"get {key}",
                lambda: self.client.get_object(Bucket=self.bucket, Key=full, **extra),
                key,
            )
            etag[:] = [response.get("ETag", "")]
            body = response["Body"]
            reader = ChunkReader(body.iter_chunks(1024 * 1024), close=body.close)
            return reader, offset + int(response["ContentLength"])

        return ResumingReader(
            open_at,
            broken=_broken_body,
            budget=self.budget,
            describe=f"{self.describe()}: get {key}",
        )

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        response = self._call(
            f"stat {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=full), key
        )
        return ObjectInfo(key, int(response["ContentLength"]))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Page by page with the continuation token, each page retried on its own.
        strip = len(self.prefix)
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            args["StartAfter"] = self.prefix + start_after
        while True:
            page = self._call(f"list {prefix or '/'}", lambda: self.client.list_objects_v2(**args))
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], int(item["Size"]))
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    def list_prefixes(self, prefix: str) -> tuple[str, ...]:
        validate_prefix(prefix)
        strip = len(self.prefix)
        found: list[str] = []
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + prefix,
            "Delimiter": "/",
        }
        while True:
            page = self._call(f"list {prefix or '/'}", lambda: self.client.list_objects_v2(**args))
            found.extend(p["Prefix"][strip:] for p in page.get("CommonPrefixes", []))
            if not page.get("IsTruncated"):
                return tuple(sorted(found))
            args["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call(
            f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=full), key
        )


class Attempts:
    """A request, counting how often it was sent (a retried write may have been done by an
    attempt whose answer never came)."""

    def __init__(self, request: Callable[[], Any]) -> None:
        self.request = request
        self.count = 0

    def __call__(self) -> Any:
        self.count += 1
        return self.request()


def _broken_body(exc: BaseException) -> bool:
    """A download body that broke off: reset, truncated, timed out."""
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, (BotoCoreError, OSError))


def _check_etag(etag: str | None, expected: str, key: str) -> None:
    """S3's ETag of an unencrypted object is its MD5 (or MD5-of-MD5s-N for multipart)."""
    if etag is None:
        return
    value = etag.strip('"')
    # SSE-KMS and some S3-compatible servers return ETags that are not MD5s: only a value
    # with an MD5's shape that differs from ours proves corruption.
    if len(value.split("-")[0]) == 32 and value != expected:
        raise VerificationFailed(f"{key}: ETag {value} does not match the data sent ({expected})")


def _sse_arguments(settings: RepositorySettings) -> dict[str, Any]:
    """Server-side encryption for every object written (``[repository] sse``)."""
    if settings.sse is None:
        return {}
    extra: dict[str, Any] = {"ServerSideEncryption": settings.sse}
    if settings.sse_kms_key_id:
        extra["SSEKMSKeyId"] = settings.sse_kms_key_id
    return extra
