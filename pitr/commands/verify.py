"""``pitr verify``: read back every object of the chain(s) and the logs, in parallel, checking
stored size, sha256 and (for zstd) that it still decompresses to the recorded size. Encrypted
objects are decrypted too where an identity is configured; without one, their stored size and
sha256 are what is checked (docs/encryption.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pitr import crypt
from pitr.catalog import Catalog
from pitr.catalog.store import CatalogStore
from pitr.errors import VerificationFailed
from pitr.planner.common import descends_from, lineage
from pitr.storage.transfer import Failure, StoredObject, verify_all


@dataclass(frozen=True)
class Verified:
    """How many objects (and bytes) were read back, and which failed."""

    objects: int
    bytes: int
    failures: list[Failure]
    contents_checked: bool  # False: encrypted objects checked as stored only (no identity)

    @property
    def intact(self) -> int:
        return self.objects - len(self.failures)

    def error(self) -> VerificationFailed | None:
        """What the run exits with: exit 8 when any object failed."""
        if not self.failures:
            return None
        return VerificationFailed(
            f"{len(self.failures)} object(s) failed verification, first: {self.failures[0].problem}"
        )


def objects_to_verify(catalog: Catalog, backup_id: str | None) -> list[StoredObject]:
    """Everything, or one backup's chain plus the logs from its start onwards."""
    if backup_id is None:
        backups = list(catalog.backups)
        segments = [s for run in catalog.streams.values() for s in run]
        histories = [h.object for h in catalog.histories]
        return [o for b in backups for o in b.objects] + [s.object for s in segments] + histories
    from pitr.catalog.store import check_backup_id

    backup = check_backup_id(catalog, backup_id)
    chain = [backup]
    if backup.type != "full" and backup.parent:  # and every link before it
        chain = [*lineage(catalog, backup)[0][:-1], backup]
        if chain[0].type != "full":
            check_backup_id(catalog, chain[0].parent or "")  # the broken link, named
    else:  # a full: every backup of its line
        chain += [
            b
            for b in catalog.backups
            if b.id != backup.id and descends_from(catalog, b, {backup.id})
        ]
    # WAL positions are comparable across timelines; binlog positions only within a stream.
    global_keys = catalog.engine == "postgresql"
    segments = [
        s
        for run in catalog.streams.values()
        for s in run
        if s.end_key > backup.start_key or (run.stream != backup.stream and not global_keys)
    ]
    histories = [h.object for h in catalog.histories]
    return [o for b in chain for o in b.objects] + [s.object for s in segments] + histories


def verify_objects(
    store: CatalogStore,
    objects: Sequence[StoredObject],
    *,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Verified:
    failures = verify_all(
        store.storage, objects, workers=workers, progress=progress, contents=crypt.can_decrypt()
    )
    total = sum(o.size for o in objects)
    return Verified(len(objects), total, failures, contents_checked(objects))


def contents_checked(objects: Sequence[StoredObject]) -> bool:
    """Whether verifying ``objects`` checks what they decrypt to, not only what is stored."""
    return crypt.can_decrypt() or all(o.encryption == "none" for o in objects)
