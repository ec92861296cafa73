"""The open binlog's shipped prefix in the catalog (``pitr.catalog.openlogs``) and the
follower's shipments of it (``OpenShipper``), on a file repository and real binlogs."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pitr.catalog import Catalog, openlogs
from pitr.catalog.model import SegmentIndex
from pitr.catalog.segments import SegmentRun
from pitr.catalog.store import CatalogStore
from pitr.engines.mysql.archive import Shipper
from pitr.engines.mysql.binlog import index_binlog_file
from pitr.engines.mysql.openship import OpenShipper, Prefix
from pitr.engines.mysql.streams import segment_document
from pitr.storage.local import LocalStorage
from pitr.storage.transfer import Compression, StoredObject

VECTORS = Path(__file__).parent.parent / "vectors" / "generated"
T = datetime(2026, 3, 1, tzinfo=UTC)


def store_at(tmp_path: Path) -> CatalogStore:
    return CatalogStore(LocalStorage(str(tmp_path / "repo")), "main", "mariadb")


def closed_doc(name: str) -> SegmentIndex:
    index = index_binlog_file(VECTORS / name)
    stored = StoredObject(f"main/logs/S/{name}.zst", 10, "0" * 64, index.size, "zstd")
    return segment_document(index, "S", "1", stored, T)


def test_an_open_binlog_is_the_newest_segment_until_its_closed_file_is_archived(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "mysql-bin.000004"
    shutil.copyfile(VECTORS / "mysql-bin.000004", path)
    opener = OpenShipper(Shipper(store, Compression("zstd", 3, 1), "mariadb", "1"))
    end = opener.ship(path)
    index = index_binlog_file(path)
    assert end == index.transactions[-1].end
    assert opener.ship(path) == end  # nothing new: nothing shipped again
    archived = closed_doc("mysql-bin.000002").segment
    stream = next(iter(opener.present))[0]
    catalog = Catalog("main", "mariadb", (), {stream: SegmentRun.of(stream, [archived])})
    planned = openlogs.with_open(store.storage, store.layout, catalog)
    last = list(planned.streams[stream])[-1]
    assert (last.name, last.end_key & ((1 << 40) - 1)) == ("mysql-bin.000004", end)
    assert openlogs.is_open(store.layout, last)
    assert openlogs.opened(store.layout, planned) == {stream: "mysql-bin.000004"}
    assert openlogs.opened(store.layout, catalog) == {}
    txs = store.transactions([last])[last.ref]
    assert len(txs) == len(index.transactions) and txs[-1].end == f"mysql-bin.000004:{end}"
    # the closed file archived: the open copy is obsolete, then removed
    closed = list(SegmentRun.of(stream, [archived, last]))
    same = Catalog("main", "mariadb", (), {stream: SegmentRun.of(stream, closed)})
    assert openlogs.with_open(store.storage, store.layout, same) == same
    opener.closed(["mysql-bin.000004"])
    assert list(store.storage.list(openlogs.prefix(store.layout))) == []


def test_a_longer_prefix_replaces_the_shorter(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    source = (VECTORS / "mysql-bin.000004").read_bytes()
    ends = [t.end for t in index_binlog_file(VECTORS / "mysql-bin.000004").transactions]
    assert len(ends) > 1
    path = tmp_path / "mysql-bin.000004"
    path.write_bytes(source[: ends[0] + 7])  # a torn event after the first transaction
    opener = OpenShipper(Shipper(store, Compression("zstd", 3, 1), "mariadb", "1"))
    assert opener.ship(path) == ends[0]
    path.write_bytes(source)
    assert opener.ship(path) == ends[-1]
    listed = store.storage.list(openlogs.prefix(store.layout))
    keys = sorted(i.key.rsplit("/", 1)[1] for i in listed)
    assert keys == [f"mysql-bin.000004.{ends[-1]}.zst", "mysql-bin.000004.json"]


def test_prefix_reads_only_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with path.open("rb") as fh:
        reader = Prefix(fh, 6)
        assert reader.read(4) + reader.read() + reader.read(3) == b"012345"


def test_leftover_open_copies_of_archived_files_are_removed(tmp_path: Path) -> None:
    """What ``expire`` removes: the open copies (and an orphan object of a crashed
    follower) named at or before their stream's newest archived file; a newer one stays."""
    store = store_at(tmp_path)
    opener = OpenShipper(Shipper(store, Compression("zstd", 3, 1), "mariadb", "1"))
    shutil.copyfile(VECTORS / "mysql-bin.000004", tmp_path / "mysql-bin.000004")
    opener.ship(tmp_path / "mysql-bin.000004")
    stream = next(iter(opener.present))[0]
    orphan = openlogs.object_key(store.layout, stream, "mysql-bin.000001", 99, ".zst")
    store.storage.put(orphan, io.BytesIO(b"x"))

    def archived(*names: str) -> Catalog:
        segs = [replace(closed_doc(n).segment, stream=stream) for n in names]
        return Catalog("main", "mariadb", (), {stream: SegmentRun.of(stream, segs)})

    assert openlogs.remove_obsolete(store.storage, store.layout, archived("mysql-bin.000002")) == [
        orphan
    ]
    left = {i.key.rsplit("/", 1)[1] for i in store.storage.list(openlogs.prefix(store.layout))}
    assert len(left) == 2 and all(key.startswith("mysql-bin.000004.") for key in left)
    gone = openlogs.remove_obsolete(store.storage, store.layout, archived("mysql-bin.000004"))
    assert len(gone) == 2 and gone[0].endswith(".json")  # the index document first
    assert list(store.storage.list(openlogs.prefix(store.layout))) == []
