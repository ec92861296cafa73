"""``pitr events``: the transactions in the archived logs, between two times, and with
``--grep REGEX`` only those whose line matches.

The pattern is compiled before anything is read, so a bad one is a usage error that touches
nothing. An event matches when the pattern is found in its values joined by spaces, in the
order of its ``--json`` entry (time, xid or GTID, position, log, summary: what its line
shows, and the rest of the entry).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pitr.config.settings import Settings
from pitr.domain.timeutil import format_time, parse_time
from pitr.engines import engine_and_store
from pitr.engines.base import Event
from pitr.errors import UsageError


def compile_grep(grep: str | None) -> re.Pattern[str] | None:
    """The ``--grep`` pattern; None without one."""
    if not grep:
        return None
    try:
        return re.compile(grep)
    except re.error as exc:
        raise UsageError(f"--grep: not a regular expression: {exc}") from None


def searched(event: Event) -> str:
    """What ``--grep`` looks in: the values of the event's ``--json`` entry (docs/json.md), in
    its order, one it lacks written ``None``."""
    time = format_time(event.time)
    if event.binlog:
        values: tuple[object, ...] = (time, event.gtid, None, event.position, event.end, None)
        values += (event.log, event.stream, event.summary)
    else:
        values = (time, event.xid, None, event.position, event.position, event.log)
        values += (event.timeline, event.summary)
    return " ".join(str(v) for v in values)


def matching(events: Sequence[Event], pattern: re.Pattern[str] | None) -> list[Event]:
    """The events ``pattern`` finds; all of them without a pattern."""
    if pattern is None:
        return list(events)
    return [e for e in events if pattern.search(searched(e))]


def events(
    settings: Settings,
    instance: str | None,
    start: str | None,
    end: str | None,
    grep: str | None,
    rows: bool,
    timezone: str | None,
) -> list[Event]:
    """The matching transactions, oldest first (``rows``: PostgreSQL row counts)."""
    zone = timezone or settings.timezone
    since = parse_time(start, timezone=zone) if start else None
    until = parse_time(end, timezone=zone) if end else None
    pattern = compile_grep(grep)
    engine, store = engine_and_store(settings, instance)
    return matching(engine.events(store, store.load(), since, until, rows=rows), pattern)
