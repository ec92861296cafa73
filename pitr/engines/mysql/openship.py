"""``archive --follow``: the open binlog's complete transactions, shipped before it closes.

Every ``follow_interval`` seconds (default 5) and when the follower stops, the spool copy of
the binlog the server is writing is indexed when it grew (only the bytes after the last
transaction indexed before: pitr.engines.mysql.binlog.resume); its bytes up to the end of its
last complete
transaction are uploaded under ``open/`` with their index document (``pitr.catalog.openlogs``),
replacing the shorter copy shipped before. ``plan``, ``restore`` and ``recover`` use it as the
newest part of its stream (``--latest``, ``--at``, ``--gtid``, ``--position``). When the server
rotates past the file, the closed file is archived as always and its open copy removed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from pitr.catalog import openlogs
from pitr.domain.timeutil import utcnow
from pitr.engines.mysql.archive import Shipper
from pitr.engines.mysql.binlog import BinlogIndex, index_binlog_file
from pitr.engines.mysql.binlog.resume import index_continued
from pitr.engines.mysql.streams import read_head, segment_document
from pitr.errors import PitrError
from pitr.storage.transfer import upload

log = logging.getLogger("pitr.mysql")


class Prefix:
    """The first ``size`` bytes of a file, read like a file."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self._left = size

    def read(self, n: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        data = self._fh.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        return data


class OpenShipper:
    """Ships the growing prefix of the open binlog; remembers what it shipped."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper
        self.shipped: dict[str, tuple[int, str]] = {}  # name -> (end, object key)
        self.sizes: dict[str, int] = {}  # name -> file size when last indexed
        #: name -> the index of its first bytes, to the end of its last complete transaction
        self.indexed: dict[str, BinlogIndex] = {}
        store = shipper.store
        #: (stream, name) of the open copies in the repository (an earlier run's too)
        self.present = {(d.segment.stream, d.segment.name)
                        for d in openlogs.open_indexes(store.storage, store.layout)}  # fmt: skip

    def ship(self, path: Path) -> int:
        """Ship ``path``'s complete transactions when there are more than last time; returns
        the end offset now in the repository (0: nothing)."""
        store, compression = self.shipper.store, self.shipper.compression
        name = path.name
        before = self.shipped.get(name)
        size = path.stat().st_size
        if before is not None and self.sizes.get(name) == size:
            return before[0]  # not one byte more: not read again
        self.sizes[name] = size
        known = self.indexed.get(name)
        index = index_binlog_file(path) if known is None else index_continued(path, known)
        if not index.transactions:
            return 0
        end = index.transactions[-1].end
        # the index of the first <end> bytes: the same complete transactions and GTID state
        prefix = replace(index, size=end, truncated=False, valid_end=end)
        self.indexed[name] = prefix
        if before is not None and before[0] == end:
            return end
        stream, done = self.shipper.stream_of(read_head(path, self.shipper.system))
        if done:
            return 0  # archived closed already
        key = openlogs.object_key(store.layout, stream, name, end, compression.suffix)
        with path.open("rb") as fh:
            stored = upload(store.storage, key, Prefix(fh, end), compression, hash_raw=True,
                            size=end)  # fmt: skip
        doc = segment_document(prefix, stream, self.shipper.system, stored, utcnow())
        openlogs.publish(store.storage, store.layout, doc, before[1] if before else None)
        self.shipped[name] = (end, key)
        self.present.add((stream, name))
        log.info("open %s shipped up to %d (%d transactions)", name, end, len(prefix.transactions))
        return end

    def try_ship(self, path: Path | None) -> None:
        """``ship``, a failure logged (the follower goes on: the next interval retries)."""
        if path is None:
            return
        try:
            self.ship(path)
        except (PitrError, OSError) as exc:
            log.warning("could not ship the open binlog %s: %s", path.name,
                        getattr(exc, "message", exc))  # fmt: skip

    def closed(self, names: list[str]) -> None:
        """The closed files of ``names`` are archived: their open copies go."""
        store = self.shipper.store
        for stream, name in sorted(self.present):
            if name in names:
                openlogs.remove(store.storage, store.layout, stream, name)
                self.present.discard((stream, name))
                self.shipped.pop(name, None)
                self.indexed.pop(name, None)

    def archived(self) -> None:
        """``closed`` for every binlog the shipper archived or found archived so far."""
        self.closed([*self.shipper.archived, *self.shipper.already])
