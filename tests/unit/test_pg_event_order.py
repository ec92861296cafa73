"""PostgreSQL events committed in the same microsecond are listed in WAL order."""

from datetime import UTC, datetime

from pitr.engines.base import Event
from pitr.engines.postgresql.events import in_order


def test_same_time_events_follow_the_wal_as_a_number_not_as_text() -> None:
    at = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
    later = Event(at, "0/16533E18", "000000010000000000000016", "COMMIT b", xid=2, timeline=1)
    earlier = Event(at, "0/A000000", "00000001000000000000000A", "COMMIT a", xid=1, timeline=1)
    first = Event(datetime(2026, 12, 6, 21, 0, tzinfo=UTC), "0/FFFFFFFF", "x", "c", timeline=1)
    assert [e.summary for e in in_order([later, earlier, first])] == ["c", "COMMIT a", "COMMIT b"]
