"""MySQL: ``restore --to`` whose file system fills up while the binlogs are replayed (the
restored server, whose binlog can no longer be written, aborts: MySQL's default
``binlog_error_action``): one line and exit 6 within seconds, nothing left behind, and the next
run restores."""

from __future__ import annotations

from faultkit import MiB
from my_faults import fill_up_during_replay
from mysql_e2e import mysql_site, seed


def test_the_file_system_fills_up_during_replay() -> None:
    site = mysql_site()
    try:
        seed(site, ("victim",))
        site.backup("full")
        fill_up_during_replay(site, "REPEAT(SHA2(RAND(), 256), 16384)", 900 * MiB)
    finally:
        site.destroy()
