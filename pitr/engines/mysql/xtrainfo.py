"""The small text files mariadb-backup and xtrabackup write beside a backup, parsed.

- ``xtrabackup_checkpoints`` (``mariadb_backup_checkpoints`` since MariaDB 11): ``backup_type``,
  ``from_lsn``, ``to_lsn``, ``last_lsn``.
- the binlog position: ``xtrabackup_binlog_info`` (MariaDB up to 10.11, Percona XtraBackup) or
  ``mariadb_backup_binlog_info`` (later MariaDB): ``FILE<TAB>POSITION[<TAB>GTID]``, where a
  MySQL GTID set may continue over several lines;
- ``xtrabackup_info`` (``mariadb_backup_info``): ``key = value`` lines whose ``binlog_pos`` reads
  ``filename 'mysql-bin.000003', position '1234', GTID of the last change '0-1-42'``.

Pure functions: every malformed file is a ``FormatError`` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pitr.errors import FormatError

CHECKPOINTS_NAMES = ("mariadb_backup_checkpoints", "xtrabackup_checkpoints")
INFO_NAMES = ("mariadb_backup_info", "xtrabackup_info")

BINLOG_INFO_NAMES = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")
_BINLOG_POS = re.compile(
    r"filename '(?P<file>[^']+)', position '(?P<pos>\d+)'"
    r"(?:, GTID of the last change '(?P<gtid>[^']*)')?"
)


@dataclass(frozen=True)
class Checkpoints:
    backup_type: str
    from_lsn: int
    to_lsn: int
    last_lsn: int


@dataclass(frozen=True)
class BinlogPosition:
    """Where the backup is consistent in the binlog, and the GTID state there."""

    file: str
    position: int
    gtids: str  # "" when the server has none

    @property
    def text(self) -> str:
        return f"{self.file}:{self.position}"


def _pairs(text: str, where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise FormatError(f"{where}: not a 'key = value' line: {line[:80]!r}")
        found[key.strip()] = value.strip()
    return found


def parse_checkpoints(text: str, where: str = "xtrabackup_checkpoints") -> Checkpoints:
    pairs = _pairs(text, where)
    try:
        return Checkpoints(
            backup_type=pairs["backup_type"],
            from_lsn=int(pairs["from_lsn"]),
            to_lsn=int(pairs["to_lsn"]),
            last_lsn=int(pairs.get("last_lsn", pairs["to_lsn"])),
        )
    except (KeyError, ValueError) as exc:
        raise FormatError(f"{where}: missing or malformed {exc}") from None


def parse_binlog_info(text: str, where: str = "xtrabackup_binlog_info") -> BinlogPosition:
    """``FILE\\tPOS[\\tGTID]``; a MySQL GTID set may span lines (``uuid:1-5,\\nuuid:1-3``)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise FormatError(f"{where}: empty")
    fields = lines[0].split("\t")
    if len(fields) < 2 or not fields[1].strip().isdigit() or not fields[0].strip():
        raise FormatError(f"{where}: not 'FILE<TAB>POSITION[<TAB>GTID]': {lines[0][:80]!r}")
    gtid_lines = [fields[2] if len(fields) > 2 else "", *lines[1:]]
    gtids = "".join(part.strip() for part in gtid_lines)
    return BinlogPosition(fields[0].strip(), int(fields[1]), gtids)


def parse_info_binlog_pos(text: str, where: str = "xtrabackup_info") -> BinlogPosition | None:
    """The ``binlog_pos`` of ``xtrabackup_info`` (None when the server had no binlog)."""
    value = _pairs(text, where).get("binlog_pos", "")
    if not value:
        return None
    match = _BINLOG_POS.search(value)
    if match is None:
        raise FormatError(f"{where}: unexpected binlog_pos {value[:120]!r}")
    return BinlogPosition(match["file"], int(match["pos"]), (match["gtid"] or "").strip())


def binlog_position(directory: Path) -> BinlogPosition | None:
    """The backup's binlog position from the files in ``directory``: a binlog info file
    under either name, else the info file's ``binlog_pos``."""
    for name in BINLOG_INFO_NAMES:
        path = directory / name
        if path.is_file() and path.read_text().strip():
            return parse_binlog_info(path.read_text(), str(path))
    for name in INFO_NAMES:
        info = directory / name
        if info.is_file():
            return parse_info_binlog_pos(info.read_text(), str(info))
    return None


def read_checkpoints(directory: Path) -> Checkpoints:
    """The checkpoints file under either name."""
    for name in CHECKPOINTS_NAMES:
        path = directory / name
        if path.is_file():
            return parse_checkpoints(path.read_text(), str(path))
    raise FormatError(
        f"{directory / CHECKPOINTS_NAMES[0]}: missing (nor is {CHECKPOINTS_NAMES[1]} there: "
        "not a mariadb-backup / xtrabackup backup)"
    )
