"""Repository backends behind one interface; drivers (and their SDKs) load on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pitr.storage.base import ObjectInfo, PutResult, Storage

if TYPE_CHECKING:
    from pitr.config.settings import RepositorySettings

__all__ = ["ObjectInfo", "PutResult", "Storage", "open_storage"]


def open_storage(settings: RepositorySettings) -> Storage:
    """The driver for ``settings.url``; only its SDK gets imported."""
    loc = settings.location
    if loc.scheme == "file":
        from pitr.storage.local import LocalStorage

        return LocalStorage(loc.container)
    if loc.scheme == "s3":
        from pitr.storage.s3 import S3Storage

        return S3Storage(settings)
    from pitr.storage.swift import SwiftStorage

    return SwiftStorage(settings)
