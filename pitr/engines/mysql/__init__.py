"""MariaDB and MySQL engine support."""
