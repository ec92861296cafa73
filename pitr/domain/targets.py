"""Recovery targets: parse what the DBA typed, validate it for the engine, describe it.

Exactly one of ``--at``, ``--xid``, ``--lsn``, ``--restore-point`` (PostgreSQL), ``--gtid``,
``--position`` (MariaDB/MySQL) or ``--latest``; ``--exclusive`` stops just before the target
(a position is already a stop between transactions: it takes no ``--exclusive``);
``--timeline`` (PostgreSQL) picks the timeline to follow. Everything wrong is a ``UsageError``
(exit 2) before anything is read from the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pitr.domain.positions import format_lsn, parse_lsn
from pitr.domain.timeutil import format_time, parse_time
from pitr.errors import UsageError

TargetKind = Literal["time", "xid", "lsn", "restore_point", "gtid", "position", "latest"]
TimelineChoice = int | Literal["current", "latest"] | None

ENGINE_TARGETS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"time", "xid", "lsn", "restore_point", "latest"}),
    "mariadb": frozenset({"time", "gtid", "position", "latest"}),
    "mysql": frozenset({"time", "gtid", "position", "latest"}),
}
OPTION_OF = {
    "time": "--at",
    "xid": "--xid",
    "lsn": "--lsn",
    "restore_point": "--restore-point",
    "gtid": "--gtid",
    "position": "--position",
    "latest": "--latest",
}
_POSITION = re.compile(r"^([^:/\s][^:/]*):(\d{1,20})$")
MAX_XID = 2**32 - 1
FIRST_NORMAL_XID = 3
MAX_RESTORE_POINT = 63  # PostgreSQL's MAXFNAMELEN - 1


@dataclass(frozen=True)
class Target:
    """A validated recovery target. Exactly the field for ``kind`` is set."""

    kind: TargetKind
    inclusive: bool = True
    time: datetime | None = None
    xid: int | None = None
    lsn: int | None = None
    name: str | None = None
    gtid: str | None = None  # normalised text; engines parse it with pitr.domain.gtid
    position: tuple[str, int] | None = None
    timeline: TimelineChoice = None

    @property
    def value(self) -> str | None:
        """The target as text, as ``plan --json`` shows it."""
        if self.kind == "time":
            return format_time(self.time)
        if self.kind == "xid":
            return str(self.xid)
        if self.kind == "lsn":
            return format_lsn(self.lsn or 0)
        if self.kind == "position" and self.position:
            return f"{self.position[0]}:{self.position[1]}"
        return self.name if self.kind == "restore_point" else self.gtid

    def describe(self) -> str:
        what = "latest" if self.kind == "latest" else f"{OPTION_OF[self.kind]} {self.value}"
        return what + ("" if self.inclusive else " (exclusive)")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.kind, "value": self.value, "inclusive": self.inclusive}
        if self.timeline is not None:
            doc["timeline"] = self.timeline
        return doc


def parse_xid(text: str) -> int:
    try:
        xid = int(text.strip(), 10)
    except ValueError:
        raise UsageError(f"not a transaction id: {text!r}") from None
    if not FIRST_NORMAL_XID <= xid <= MAX_XID:
        raise UsageError(f"transaction id {xid} is out of range ({FIRST_NORMAL_XID} to {MAX_XID})")
    return xid


def parse_position(text: str) -> tuple[str, int]:
    match = _POSITION.match(text.strip())
    if not match:
        raise UsageError(
            f"not a binlog position: {text!r}", hint="example: --position mysql-bin.000042:1234"
        )
    offset = int(match.group(2))
    if offset < 4:
        raise UsageError(f"binlog position {text!r}: offsets start at 4")
    return match.group(1), offset


def parse_gtid(text: str, engine: str) -> str:
    """Validate with the engine's own GTID type; returns the normalised text."""
    from pitr.domain.gtid import MariaGtidPosition, MysqlGtid

    if not text.strip():
        raise UsageError("--gtid: empty; give a GTID (see 'pitr events')")
    if engine == "mariadb":
        return str(MariaGtidPosition.parse(text))
    return str(MysqlGtid.parse(text))


def parse_timeline(text: str | None) -> TimelineChoice:
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("current", "latest"):
        return value  # type: ignore[return-value]
    try:
        number = int(value, 16) if value.startswith("0x") else int(value)
    except ValueError:
        raise UsageError(
            f"--timeline: expected a number, 'current' or 'latest', got {text!r}"
        ) from None
    if not 1 <= number <= 0xFFFFFFFF:
        raise UsageError(f"--timeline: {number} is not a timeline id")
    return number


def parse_target(
    engine: str,
    *,
    at: str | None = None,
    xid: str | None = None,
    lsn: str | None = None,
    restore_point: str | None = None,
    gtid: str | None = None,
    position: str | None = None,
    latest: bool = False,
    exclusive: bool = False,
    timeline: str | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
) -> Target:
    """The one target given on the command line, validated for ``engine``.

    ``now`` (the caller's clock) refuses times in the future.
    """
    given = {
        "time": at,
        "xid": xid,
        "lsn": lsn,
        "restore_point": restore_point,
        "gtid": gtid,
        "position": position,
        "latest": True if latest else None,
    }
    chosen = [kind for kind, value in given.items() if value is not None]
    options = " ".join(OPTION_OF[k] for k in OPTION_OF)
    if not chosen:
        raise UsageError(f"no recovery target: give exactly one of {options}")
    if len(chosen) > 1:
        raise UsageError(
            f"several recovery targets ({', '.join(OPTION_OF[k] for k in chosen)}): give one"
        )
    kind: TargetKind = chosen[0]  # type: ignore[assignment]
    if kind not in ENGINE_TARGETS[engine]:
        allowed = ", ".join(OPTION_OF[k] for k in OPTION_OF if k in ENGINE_TARGETS[engine])
        raise UsageError(f"{OPTION_OF[kind]} is not a target for {engine} (use {allowed})")
    if timeline is not None and engine != "postgresql":
        raise UsageError(f"--timeline applies to PostgreSQL only, not {engine}")
    if exclusive and kind in ("latest", "restore_point"):
        raise UsageError(f"--exclusive cannot be combined with {OPTION_OF[kind]}")
    if exclusive and kind == "position":
        # A position is a boundary between transactions, not a transaction: replay already
        # applies everything before it and nothing from it on (--stop-position).
        raise UsageError(
            "--exclusive cannot be combined with --position: replay stops at the position, "
            "before the transaction that starts there",
            hint="give the position where the unwanted transaction starts, as 'pitr events' "
            "shows it",
        )
    fields: dict[str, Any] = {
        "kind": kind,
        "inclusive": not exclusive,
        "timeline": parse_timeline(timeline),
    }
    if kind == "time":
        assert at is not None
        when = parse_time(at, timezone=timezone)
        if now is not None and when > now:
            raise UsageError(f"--at {at}: that time is in the future")
        fields["time"] = when
    elif kind == "xid":
        fields["xid"] = parse_xid(str(xid))
    elif kind == "lsn":
        fields["lsn"] = parse_lsn(str(lsn))
    elif kind == "restore_point":
        name = str(restore_point)
        if not name or len(name) > MAX_RESTORE_POINT:
            raise UsageError(f"--restore-point: a name of 1 to {MAX_RESTORE_POINT} characters")
        fields["name"] = name
    elif kind == "gtid":
        fields["gtid"] = parse_gtid(str(gtid), engine)
    elif kind == "position":
        fields["position"] = parse_position(str(position))
    return Target(**fields)
