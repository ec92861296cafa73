"""Repository URLs: ``file:///path``, ``s3://bucket/prefix``, ``swift://container/prefix``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from pitr.errors import ConfigError

Scheme = Literal["file", "s3", "swift"]

# S3 bucket naming rules (general purpose buckets).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class RepositoryUrl:
    """A parsed repository location: a scheme, a bucket/container (or root path), a prefix."""

    scheme: Scheme
    container: str  # S3 bucket, Swift container, or the root directory for file://
    prefix: str  # no leading or trailing slash; "" for the root

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.container}"
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"{self.scheme}://{self.container}{tail}"


def parse_repository_url(url: str) -> RepositoryUrl:
    """Parse and validate; every problem is a ``ConfigError`` saying what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{url!r}: a file:// URL names a local path (file:///var/lib/pitr/repo)"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{url!r}: the path must be absolute")
        return RepositoryUrl("file", path.rstrip("/") or "/", "")
    if scheme in ("s3", "swift"):
        container = parts.netloc
        prefix = unquote(parts.path).strip("/")
        if not container:
            kind = "bucket" if scheme == "s3" else "container"
            raise ConfigError(f"{url!r}: the {kind} name is empty")
        if scheme == "s3" and (not _BUCKET.match(container) or _IP_LIKE.match(container)):
            raise ConfigError(
                f"{url!r}: {container!r} is not a valid S3 bucket name "
                "(3-63 characters: lower-case letters, digits, dots, hyphens)"
            )
        if "//" in prefix:
            raise ConfigError(f"{url!r}: the prefix has an empty path component")
        if parts.query or parts.fragment:
            raise ConfigError(f"{url!r}: query strings and fragments are not allowed")
        return RepositoryUrl(scheme, container, prefix)  # type: ignore[arg-type]
    if not scheme:
        raise ConfigError(f"{url!r}: not a URL (file:///path, s3://bucket/prefix, swift://...)")
    raise ConfigError(f"{url!r}: unknown scheme {scheme!r} (use file://, s3:// or swift://)")
