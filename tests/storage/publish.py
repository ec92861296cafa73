"""Publish realistic PostgreSQL-like catalogs through the real publishing code.

Each WAL segment and backup of ``tests/unit/catalogs.py`` gets a real data object (a few KB of
bytes, compressed and hashed by the transfer pipeline) and its documents are published by
``CatalogStore`` exactly as the engines publish them.
"""

from __future__ import annotations

import io
from dataclasses import replace

from catalogs import backup, history, transactions, wal

from pitr.catalog.model import Backup, LogSegment, SegmentIndex, TimelineHistory
from pitr.catalog.store import CatalogStore
from pitr.storage.transfer import Compression, upload

__all__ = ["backup", "history", "publish_backup", "publish_history", "publish_segment", "wal"]


def _data(label: str) -> bytes:
    return (f"{label}\n" * 200).encode()


def publish_segment(store: CatalogStore, seg: LogSegment) -> LogSegment:
    stored = upload(
        store.storage, seg.object.key, io.BytesIO(_data(seg.name)), Compression(), hash_raw=True
    )
    real = replace(
        seg,
        object=stored,
        extra={"archived_at": seg.max_commit.isoformat()} if seg.max_commit else {},
    )
    index = SegmentIndex(real, tuple(transactions(seg)) if seg.commits else ())
    store.publish_segment(index)
    return real


def publish_backup(store: CatalogStore, b: Backup, *, manifest: bool = True) -> Backup:
    objects = tuple(
        upload(store.storage, o.key, io.BytesIO(_data(o.key)), Compression()) for o in b.objects
    )
    real = replace(b, objects=objects)
    if manifest:
        store.publish_backup(real)
    return real


def publish_history(store: CatalogStore, h: TimelineHistory) -> TimelineHistory:
    name = f"{h.timeline:08X}.history"
    text = "".join(f"{p}\t{t}\tno recovery target specified\n" for p, _k, t in h.switches)
    stored = upload(
        store.storage,
        store.layout.history_object(name, ""),
        io.BytesIO(text.encode()),
        Compression("none"),
    )
    real = replace(h, object=stored)
    store.publish_history(real, name)
    return real
