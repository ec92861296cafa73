"""Where each catalog object lives in the repository (docs/catalog-format.md).

```
<instance>/backups/<backup id>/manifest.json   written last: its presence = complete backup
<instance>/backups/<backup id>/<objects>        data objects
<instance>/logs/<stream>/<group>/<log name><suffix>  a log file (WAL segment, binlog)
<instance>/logs/<stream>/<group>/<log name>.json     its index document
    (<group>/ is the first 16 characters of a WAL file name; binlogs have none)
<instance>/history/<TLI>.history[.json]         PostgreSQL timeline history files
<instance>/catalog/backups.json                 summary of every manifest (a cache)
<instance>/catalog/logs/<stream>/<first>~<last>.json  summary pages of index documents (a cache)
<instance>/locks/instance.json                  the instance lock, while held
<instance>/open/<stream>/<log name>.<end><suffix>[.json]  an open binlog's shipped prefix
    (pitr.catalog.openlogs)
```
"""

from __future__ import annotations

from dataclasses import dataclass

from pitr.errors import UsageError

INDEX_SUFFIX = ".json"
PAGE_SEPARATOR = "~"
_HEX = frozenset("0123456789ABCDEF")


def log_group(name: str) -> str:
    """The directory, within its stream, of the log named ``name``. WAL files are grouped by
    their first 16 characters (timeline and the upper half of the LSN: 4 GB of WAL), so that
    no directory grows to the hundreds of thousands of entries a listing must read whole,
    whatever it asks for. Binlogs, far fewer and larger, are not grouped."""
    if len(name) >= 24 and _HEX.issuperset(name[:24]):
        return f"{name[:16]}/"
    return ""


@dataclass(frozen=True)
class Layout:
    """Key names for one instance's part of the repository."""

    instance: str

    def __post_init__(self) -> None:
        if not self.instance or "/" in self.instance or self.instance.startswith("."):
            raise UsageError(f"invalid instance name {self.instance!r}")

    @property
    def root(self) -> str:
        return f"{self.instance}/"

    # backups
    @property
    def backups(self) -> str:
        return f"{self.root}backups/"

    def backup_dir(self, backup_id: str) -> str:
        return f"{self.backups}{backup_id}/"

    def manifest(self, backup_id: str) -> str:
        return f"{self.backup_dir(backup_id)}manifest.json"

    def backup_id_of(self, key: str) -> str | None:
        """The backup id a ``backups/<id>/...`` key belongs to."""
        if not key.startswith(self.backups):
            return None
        return key[len(self.backups) :].split("/", 1)[0] or None

    # logs
    @property
    def logs(self) -> str:
        return f"{self.root}logs/"

    def stream_dir(self, stream: str) -> str:
        return f"{self.logs}{stream}/"

    def log_object(self, stream: str, name: str, suffix: str) -> str:
        return f"{self.stream_dir(stream)}{log_group(name)}{name}{suffix}"

    def log_index(self, stream: str, name: str) -> str:
        return self.log_object(stream, name, INDEX_SUFFIX)

    # timeline histories
    @property
    def histories(self) -> str:
        return f"{self.root}history/"

    def history_object(self, name: str, suffix: str) -> str:
        return f"{self.histories}{name}{suffix}"

    def history_index(self, name: str) -> str:
        return f"{self.histories}{name}{INDEX_SUFFIX}"

    # summaries
    @property
    def backups_summary(self) -> str:
        return f"{self.root}catalog/backups.json"

    @property
    def pages(self) -> str:
        return f"{self.root}catalog/logs/"

    def page(self, stream: str, first: str, last: str) -> str:
        return f"{self.pages}{stream}/{first}{PAGE_SEPARATOR}{last}.json"

    # locks
    @property
    def lock(self) -> str:
        return self.lock_for("instance")

    def lock_for(self, resource: str) -> str:
        """``instance`` for backup, archive, expire, recover; ``follow`` for a binlog follower,
        which runs for days and must not keep the others out."""
        return f"{self.root}locks/{resource}.json"
