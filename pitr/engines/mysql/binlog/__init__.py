"""Pure-Python reader and indexer for MariaDB and MySQL binary logs (v4 format).

- :func:`index_binlog` / :func:`index_binlog_file` read a binlog once, in chunks and with
  bounded memory, and return a :class:`BinlogIndex`: the file's GTID state before and after,
  its time range, whether it is still open (in-use flag) or torn, and its transactions with
  the positions that replay each one.
- :func:`iter_events` decodes event by event, for inspection.

Anything that is not an intact binlog raises :class:`pitr.errors.FormatError` naming the file
and the offset; a torn last event is not an error (``truncated`` is set instead).

Transaction times: MariaDB, the GTID event's timestamp (plus the Q_HRNOW microseconds of a
statement of the same second when one carries them); MySQL 8, the GTID event's
immediate_commit_timestamp; otherwise the timestamp of the event that ends the transaction.
"""

from pitr.engines.mysql.binlog.index import index_binlog, index_binlog_file
from pitr.engines.mysql.binlog.model import BinlogIndex, Event, TableRows, Transaction
from pitr.engines.mysql.binlog.records import iter_events

__all__ = [
    "BinlogIndex",
    "Event",
    "TableRows",
    "Transaction",
    "index_binlog",
    "index_binlog_file",
    "iter_events",
]
