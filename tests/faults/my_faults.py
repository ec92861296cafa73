"""What the MariaDB and MySQL fault cases share: a restore whose file system fills up while
the binlogs are replayed into the restored server."""

from __future__ import annotations

import time

from faultkit import FillWhen, MiB, tmpfs
from my_e2e import Done, Site

BULK = 48  # rows of 1 MiB: as much binlog to replay, and as much again written by replay


def fill_up_during_replay(site: Site, pad: str, size: int) -> Done:
    """Write ``BULK`` MiB after the backup (``pad``: SQL for 1 MiB of text), then restore into a
    tmpfs of ``size`` bytes left 8 MiB free once the relay logs are placed: one line and exit 6
    within seconds (not the server's minute between two tries of a write), nothing left
    behind; the next run, with room, restores it all. Returns the failed run."""
    write_bulk(site, pad)
    with tmpfs(size) as mount:
        dest = mount / "restored"
        replaying = lambda: any(dest.glob("pitr-relay*"))  # noqa: E731  the relay logs placed
        with FillWhen(mount, replaying, leave=8 * MiB) as filler:
            began = time.monotonic()
            done = site.fails(6, "restore", "--latest", "--to", str(dest), timeout=120)
            took = time.monotonic() - began
        assert filler.filled.is_set()
        assert f"the file system of {dest} ran out of space during the replay" in done.stderr
        assert took < 45, took
        assert not dest.exists() and not list(mount.glob(".restored*"))
        restored = site.ok("restore", "--latest", "--to", str(dest))["recovery"]  # the next run
        assert restored["status"] == "RESTORED"
        assert (dest / "shop" / "bulk.ibd").stat().st_size > BULK * MiB
    return done


def write_bulk(site: Site, pad: str) -> None:
    """``BULK`` rows of 1 MiB (``pad``: the SQL for one) after the backup, archived."""
    site.sql("CREATE TABLE shop.bulk (id INT AUTO_INCREMENT PRIMARY KEY, pad LONGTEXT)")
    for _ in range(BULK):
        site.sql(f"INSERT INTO shop.bulk (pad) VALUES ({pad})")
    site.flush()
    site.archive()
