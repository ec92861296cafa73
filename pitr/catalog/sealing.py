"""The parts of catalog documents that hold the databases' contents, sealed when the
repository encrypts (docs/encryption.md): the one-line summary of each transaction in a log's
index document (statements, table names) and the table names of a PostgreSQL backup manifest.
What planning needs — positions, times, xids, GTIDs, sizes, checksums — stays in the clear, so
that hosts holding only the recipients can still plan, list, expire and report status.

A sealed part is an age file to the repository's recipients, in base64, under ``"sealed"``.
"""

from __future__ import annotations

from dataclasses import replace

from pitr.catalog.model import Backup, SegmentIndex
from pitr.crypt.keyring import Keyring

#: Keys of a backup's ``engine_meta`` that name the database's objects.
CONTENT_META = ("relations",)
SEALED = "sealed"


def seal_index(index: SegmentIndex, keyring: Keyring) -> SegmentIndex:
    """``index`` with its transaction summaries sealed (as it is when nothing encrypts)."""
    if not keyring.encrypts or not any(t.summary for t in index.transactions):
        return index
    summaries = [t.summary for t in index.transactions]
    return replace(
        index,
        transactions=tuple(replace(t, summary="") for t in index.transactions),
        sealed=keyring.seal({"summaries": summaries}),
    )


def open_index(index: SegmentIndex, keyring: Keyring, where: str) -> SegmentIndex:
    """``index`` with its summaries back (needs an identity when they are sealed)."""
    if index.sealed is None:
        return index
    summaries = keyring.unseal(index.sealed, where)["summaries"]
    return replace(
        index,
        transactions=tuple(
            replace(t, summary=s) for t, s in zip(index.transactions, summaries, strict=True)
        ),
        sealed=None,
    )


def seal_backup(backup: Backup, keyring: Keyring) -> Backup:
    meta = dict(backup.engine_meta)
    content = {k: meta.pop(k) for k in CONTENT_META if meta.get(k)}
    if not keyring.encrypts or not content:
        return backup
    meta[SEALED] = keyring.seal(content)
    return replace(backup, engine_meta=meta)


def open_backup(backup: Backup, keyring: Keyring) -> Backup:
    meta = dict(backup.engine_meta)
    sealed = meta.pop(SEALED, None)
    if sealed is None:
        return backup
    meta.update(keyring.unseal(sealed, f"the manifest of backup {backup.id}"))
    return replace(backup, engine_meta=meta)
