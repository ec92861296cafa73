"""pitr: point-in-time recovery for PostgreSQL, MariaDB and MySQL."""

__version__ = "0.1.0"
