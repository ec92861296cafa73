"""Helpers for the MySQL end-to-end tests: MySQL 9.x in a Debian root (``servers.roots``),
pitr installed in the root beside it, clone backups; the story of ``my_e2e`` with MySQL's
SQL (GTID sets, ``SHOW BINARY LOG STATUS``, no sequence engine)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from my_e2e import Point, Site, mark, public_dir, utc_now, wait_for
from servers.mariadb import MySQLServer
from servers.roots import MYSQL_ROOT, ensure_root

from pitr.domain.gtid import MysqlGtidSet

#: MySQL 9.7 has no MD5() nor SHA1()
HASH = "SHA2({}, 256)"


class MysqlSite(Site):
    """A MySQL instance in the sid root, clone plugin installed, with its pitr.toml."""

    server_class = MySQLServer
    engine = "mysql"

    def gtid(self) -> str:
        """The executed GTID set."""
        return str(self.one("SELECT @@GLOBAL.gtid_executed")).replace("\n", "")

    def last_gtid(self) -> str:
        """The GTID of the newest untagged transaction this server wrote (``uuid:n``)."""
        uuid = str(self.one("SELECT @@server_uuid"))
        last = max(b for _a, b in MysqlGtidSet.parse(self.gtid()).intervals(uuid, ""))
        return f"{uuid}:{last}"

    def status(self) -> tuple[str, int]:
        row = self.sql("SHOW BINARY LOG STATUS")[0]
        return str(row[0]), int(row[1])


def mysql_site(*, plugin: bool = True, **kwargs: Any) -> MysqlSite:
    base = public_dir("pitr-mysql-")
    repo = base / "repo"
    repo.mkdir()
    site = MysqlSite(base, f'url = "file://{repo}"', root=ensure_root(MYSQL_ROOT), **kwargs)
    site.repo_dir = repo  # type: ignore[attr-defined]
    if plugin:
        site.sql("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
    return site


def repo_of(site: MysqlSite) -> Path:
    return site.repo_dir  # type: ignore[attr-defined,no-any-return]


def seed(site: MysqlSite, victims: Sequence[str], rows: int = 500) -> None:
    site.sql("CREATE DATABASE shop")
    site.sql("CREATE TABLE shop.markers (name VARCHAR(40) PRIMARY KEY, "
             "at DATETIME(6) DEFAULT (UTC_TIMESTAMP(6)))")  # fmt: skip
    site.sql("CREATE TABLE shop.keep (id INT PRIMARY KEY, v VARCHAR(64))")
    site.sql("INSERT INTO shop.keep VALUES " + ", ".join(f"({n}, {HASH.format(n)})"
                                                        for n in range(1, rows + 1)))  # fmt: skip
    for victim in victims:
        site.sql(f"CREATE TABLE shop.{victim} (id INT PRIMARY KEY, v VARCHAR(64), "
                 "t DATETIME(6))")  # fmt: skip
        values = ", ".join(f"({n}, {HASH.format(repr(f'{n}{victim}'))}, UTC_TIMESTAMP(6))"
                           for n in range(1, rows + 1))  # fmt: skip
        site.sql(f"INSERT INTO shop.{victim} VALUES {values}")


def before_target(site: MysqlSite, tag: str, victim: str) -> Point:
    """A, a change to the victim, B; the targets just after B (B's GTID, the position after
    it, a time after it); whatever follows commits in a later second."""
    mark(site, f"{tag}-A")
    site.sql(f"UPDATE shop.{victim} SET v = {HASH.format('v')} WHERE id % 7 = 0")
    mark(site, f"{tag}-B")
    gtid = site.last_gtid()
    file, position = site.status()
    moment = utc_now(site)
    checksum = site.checksum(victim)
    later = moment.replace(microsecond=0) + timedelta(seconds=1)
    wait_for(lambda: utc_now(site) >= later, 5, "the next second")
    return Point(tag, victim, gtid, f"{file}:{position}", moment, checksum)
