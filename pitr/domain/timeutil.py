"""Time at the edges: parse user input into tz-aware UTC, format UTC for documents and output.

Inside pitr every time is a tz-aware ``datetime`` in UTC. A time without an offset is only
accepted when a time zone is named explicitly; it is never read in the machine's local zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from pitr.errors import ConfigError, UsageError


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Paris``)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}") from None


def parse_time(text: str, *, timezone: str | None = None) -> datetime:
    """Parse an ISO 8601 time; naive times need ``timezone``. Returns UTC."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_iso_basic(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        if timezone is None:
            raise UsageError(
                f"time {text!r} has no UTC offset",
                hint="add one (2026-03-04T12:00:00+01:00 or ...Z) or pass --timezone",
            )
        parsed = parsed.replace(tzinfo=zone(timezone))
    return parsed.astimezone(UTC)


def _parse_iso_basic(value: str) -> datetime:
    from dateutil.parser import isoparse

    try:
        return isoparse(value)
    except (ValueError, OverflowError):
        raise UsageError(
            f"not an ISO 8601 time: {value!r}", hint="example: 2026-03-04T12:00:05.250+01:00"
        ) from None


def format_time(value: datetime | None) -> str | None:
    """UTC ISO 8601 with microseconds when present, ``+00:00`` offset; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


def from_document(text: str | None) -> datetime | None:
    """Read a time written by ``format_time`` back (catalog documents)."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def compact_id_time(value: datetime) -> str:
    """``20260304T020000Z``: the time part of backup ids, sortable as text."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_microseconds(value: datetime | None) -> int | None:
    """Microseconds since the Unix epoch (how the catalog summary keeps times)."""
    from datetime import timedelta

    return None if value is None else (value - _EPOCH) // timedelta(microseconds=1)


def from_microseconds(value: int | None) -> datetime | None:
    from datetime import timedelta

    return None if value is None else _EPOCH + timedelta(microseconds=value)
