"""``check`` of a MariaDB instance, and a password that never shows: a pitr user with only the
privileges it needs and a password, used by backup, archive and restore with ``--debug``
(which logs every command line pitr runs)."""

from __future__ import annotations

import pytest
from my_e2e import Site, file_site, public_dir, seed

from pitr.catalog.store import CatalogStore
from pitr.cli import documents
from pitr.config.settings import load_settings
from pitr.domain.checks import CheckReport
from pitr.engines import engine_for
from pitr.engines.mysql.checks import missing_privileges
from pitr.errors import PreconditionFailed
from pitr.storage import open_storage

PASSWORD = 'pw with "quotes", \\ and spaces'


def engine_check(site: Site) -> CheckReport:
    settings = load_settings(str(site.config))
    instance = settings.instance("main")
    store = CatalogStore(open_storage(settings.repository), "main", "mariadb")
    report = CheckReport()
    engine_for(settings, instance).check(store, report)
    return report


def test_check_instance() -> None:
    site = file_site(public_dir())
    try:
        report = engine_check(site)
        assert report.ok, documents.check(report)
        names = [i.name.removeprefix("instance main: ") for i in report.items]
        assert names == [
            "reachable", "log_bin", "binlog_format", "server_id", "GTID state", "privileges",
            "tools", "binlog directory", "archive round trip",
        ]  # fmt: skip
        assert "mysql-bin.000001 is in the repository" in report.items[-1].detail
        site.sql("SET GLOBAL binlog_format = 'STATEMENT'")
        report = engine_check(site)
        assert not report.ok and isinstance(report.error, PreconditionFailed)
        assert "binlog_format is STATEMENT" in report.error.message
    finally:
        site.destroy()


def test_missing_privileges() -> None:
    assert missing_privileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"]) == []
    grants = ["GRANT RELOAD, PROCESS ON *.* TO `p`@`%`", "GRANT SELECT ON `shop`.* TO `p`@`%`"]
    assert missing_privileges(grants) == ["LOCK TABLES", "BINLOG MONITOR"]
    grants = ["GRANT RELOAD, PROCESS, LOCK TABLES, REPLICATION CLIENT ON *.* TO `p`@`%`"]
    assert missing_privileges(grants) == []


@pytest.fixture
def limited() -> Site:
    site = file_site(public_dir())
    site.sql("CREATE USER pitr@localhost IDENTIFIED BY %s", PASSWORD)
    site.sql("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE, "
             "BINLOG ADMIN, SELECT, SUPER ON *.* TO pitr@localhost")  # fmt: skip
    text = site.config.read_text().replace('user = "root"', 'user = "pitr"\npassword = "'
                                           + PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
                                           + '"')  # fmt: skip
    site.config.write_text(text)
    return site


def test_the_password_never_shows(limited: Site) -> None:
    site = limited
    try:
        seed(site, ("orders",))
        report = engine_check(site)
        assert report.ok, documents.check(report)
        outputs = []
        for args in (["backup"], ["archive"], ["plan", "--latest"]):
            done = site.run("--debug", *args)
            assert done.returncode == 0, str(done)
            outputs.append(done.stdout + done.stderr)
        dest = site.base / "restored"
        done = site.run("--debug", "restore", "--latest", "--to", str(dest))
        assert done.returncode == 0, str(done)
        outputs.append(done.stdout + done.stderr)
        assert "mariadb-backup" in outputs[0] and "--defaults-extra-file=" in outputs[0]
        for text in outputs:
            assert PASSWORD not in text
            assert "spaces" not in text
        assert (dest / "shop" / "orders.ibd").is_file()
    finally:
        site.destroy()
