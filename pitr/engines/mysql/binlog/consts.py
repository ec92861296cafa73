"""Event type codes of MySQL and MariaDB binary logs (v4 format) and their names."""

from __future__ import annotations

UNKNOWN = 0
START_V3 = 1
QUERY = 2
STOP = 3
ROTATE = 4
INTVAR = 5
RAND = 13
USER_VAR = 14
FORMAT_DESCRIPTION = 15
XID = 16
BEGIN_LOAD_QUERY = 17
EXECUTE_LOAD_QUERY = 18
TABLE_MAP = 19
WRITE_ROWS_V1 = 23
UPDATE_ROWS_V1 = 24
DELETE_ROWS_V1 = 25
INCIDENT = 26
HEARTBEAT = 27
IGNORABLE = 28
ROWS_QUERY = 29
WRITE_ROWS = 30
UPDATE_ROWS = 31
DELETE_ROWS = 32
GTID = 33
ANONYMOUS_GTID = 34
PREVIOUS_GTIDS = 35
TRANSACTION_CONTEXT = 36
VIEW_CHANGE = 37
XA_PREPARE = 38
PARTIAL_UPDATE_ROWS = 39
TRANSACTION_PAYLOAD = 40
HEARTBEAT_V2 = 41
GTID_TAGGED = 42
# MariaDB
ANNOTATE_ROWS = 160
BINLOG_CHECKPOINT = 161
MARIA_GTID = 162
MARIA_GTID_LIST = 163
START_ENCRYPTION = 164
QUERY_COMPRESSED = 165
WRITE_ROWS_COMPRESSED_V1 = 166
UPDATE_ROWS_COMPRESSED_V1 = 167
DELETE_ROWS_COMPRESSED_V1 = 168
WRITE_ROWS_COMPRESSED = 169
UPDATE_ROWS_COMPRESSED = 170
DELETE_ROWS_COMPRESSED = 171

NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and name != "UNKNOWN"
}
NAMES[UNKNOWN] = "UNKNOWN"

# Row events: code -> (operation, is MariaDB-compressed, has the v2 variable header)
ROW_EVENTS: dict[int, tuple[str, bool, bool]] = {
    WRITE_ROWS_V1: ("INSERT", False, False),
    UPDATE_ROWS_V1: ("UPDATE", False, False),
    DELETE_ROWS_V1: ("DELETE", False, False),
    WRITE_ROWS: ("INSERT", False, True),
    UPDATE_ROWS: ("UPDATE", False, True),
    DELETE_ROWS: ("DELETE", False, True),
    PARTIAL_UPDATE_ROWS: ("UPDATE", False, True),
    WRITE_ROWS_COMPRESSED_V1: ("INSERT", True, False),
    UPDATE_ROWS_COMPRESSED_V1: ("UPDATE", True, False),
    DELETE_ROWS_COMPRESSED_V1: ("DELETE", True, False),
    WRITE_ROWS_COMPRESSED: ("INSERT", True, True),
    UPDATE_ROWS_COMPRESSED: ("UPDATE", True, True),
    DELETE_ROWS_COMPRESSED: ("DELETE", True, True),
}

MARIADB_ONLY = frozenset(range(ANNOTATE_ROWS, DELETE_ROWS_COMPRESSED + 1))


def event_name(code: int) -> str:
    return NAMES.get(code, f"UNKNOWN_{code}")
