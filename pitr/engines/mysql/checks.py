"""``pitr check`` for a MariaDB/MySQL instance: reachable, binary log on (ROW format, a
server id, GTIDs; MySQL: gtid_mode ON), the privileges a backup needs, the tools, for MySQL
clone backups the plugin and the free space the copy needs, the binlog directory readable,
and one real archive round trip (``FLUSH BINARY LOGS``; the closed binlog reaches the
repository)."""

from __future__ import annotations

import os
import re

from pitr.catalog.store import CatalogStore
from pitr.domain.checks import CheckReport
from pitr.engines.mysql.server import MyServer
from pitr.errors import PreconditionFailed
from pitr.storage.transfer import Compression

#: what mariadb-backup needs (BACKUP STAGE: RELOAD; SHOW ENGINE/processlist: PROCESS; the binlog
#: position: BINLOG MONITOR, called REPLICATION CLIENT before MariaDB 10.5 and in MySQL)
BACKUP_PRIVILEGES = (("RELOAD",), ("PROCESS",), ("LOCK TABLES",),
                     ("BINLOG MONITOR", "REPLICATION CLIENT"))  # fmt: skip
#: what a MySQL clone backup needs: CLONE LOCAL, FLUSH BINARY LOGS, SHOW BINARY LOGS
CLONE_PRIVILEGES = (("BACKUP_ADMIN",), ("RELOAD",), ("REPLICATION CLIENT",))


def missing_privileges(
    grants: list[str], needed: tuple[tuple[str, ...], ...] = BACKUP_PRIVILEGES
) -> list[str]:
    text = " ".join(g.upper() for g in grants if " ON *.* " in g.upper() or "ON *.*" in g.upper())
    if re.search(r"GRANT ALL( PRIVILEGES)? ON \*\.\*", text):
        return []
    return [alts[0] for alts in needed if not any(a in text for a in alts)]


def require_replayable(server: MyServer) -> None:
    """MySQL: a backup is of use only when its binlogs replay exactly to a GTID: ROW events
    and GTIDs on. ``PreconditionFailed`` (before anything is done) otherwise."""
    values = server.variables("binlog_format", "gtid_mode")
    name = server.settings.name
    if values["gtid_mode"].upper() != "ON":
        raise PreconditionFailed(
            f"instance {name}: gtid_mode is {values['gtid_mode'] or 'OFF'}: pitr recovers "
            "MySQL by GTID",
            hint="set gtid_mode = ON and enforce_gtid_consistency = ON",
        )
    if values["binlog_format"].upper() not in ("ROW", ""):
        raise PreconditionFailed(
            f"instance {name}: binlog_format is {values['binlog_format']}: replaying "
            "statements is not exact",
            hint="set binlog_format = ROW",
        )


def check_instance(
    server: MyServer, store: CatalogStore, report: CheckReport, compression: Compression,
    spool_dir: str,
) -> None:  # fmt: skip
    name = store.instance
    values: dict[str, str] = {}

    clones = server.settings.clones

    def reachable() -> str:
        values.update(server.variables("version", "datadir", "log_bin", "binlog_format",
                                       "server_id", "log_bin_basename", "gtid_mode"))  # fmt: skip
        return f"{values['version']} at {server.where()}, datadir {values['datadir']}"

    def log_bin() -> str:
        if values["log_bin"].upper() not in ("ON", "1"):
            raise PreconditionFailed(f"instance {name}: log_bin is OFF",
                                     hint="start the server with log_bin")  # fmt: skip
        return f"ON, {values['log_bin_basename']}"

    def binlog_format() -> str:
        fmt = values["binlog_format"].upper()
        if fmt != "ROW":
            raise PreconditionFailed(
                f"instance {name}: binlog_format is {fmt}: replaying statements is not exact",
                hint="set binlog_format = ROW",
            )
        return fmt

    def server_id() -> str:
        if values["server_id"] in ("", "0"):
            raise PreconditionFailed(f"instance {name}: server_id is 0",
                                     hint="set a unique server_id")  # fmt: skip
        return values["server_id"]

    def gtid_state() -> str:
        if server.flavor == "mysql":
            require_replayable(server)
        return server.gtid_position() or "(no GTID yet)"

    def privileges() -> str:
        grants = [str(r[0]) for r in server.query("SHOW GRANTS")]
        missing = missing_privileges(grants, CLONE_PRIVILEGES if clones else BACKUP_PRIVILEGES)
        if missing:
            raise PreconditionFailed(
                f"instance {name}: user {server.user} lacks {', '.join(missing)} for backups",
                hint=f"GRANT {', '.join(missing)} ON *.* TO the pitr user",
            )
        return f"{server.user} may take backups"

    def tools() -> str:
        roles = ("server", "binlog", "client") if clones else ("backup", "stream", "binlog",
                                                                "client")  # fmt: skip
        return ", ".join(server.tool(r) for r in roles)

    def clone() -> str:
        from pitr.engines.mysql.clone import check_space, clone_root, require_clone_plugin

        version = require_clone_plugin(server)
        return f"plugin {version} active; {check_space(server, clone_root(server, spool_dir))}"

    def binlog_dir() -> str:
        directory = server.binlog_basename().parent
        if not os.access(directory, os.R_OK | os.X_OK):
            raise PreconditionFailed(
                f"instance {name}: cannot read the binlogs in {directory}",
                hint="run pitr as the server's OS user or set binlog_dir",
            )
        return str(directory)

    def round_trip() -> str:
        from pitr.engines.mysql.archive import Shipper, flush_and_archive

        shipper = Shipper.of(store, server, compression)
        closed = flush_and_archive(server, shipper)
        if closed not in shipper.archived + shipper.already:
            raise PreconditionFailed(f"instance {name}: {closed} was not archived")
        return f"flushed; {closed} is in the repository"

    for label, step in (
        ("reachable", reachable), ("log_bin", log_bin), ("binlog_format", binlog_format),
        ("server_id", server_id), ("GTID state", gtid_state), ("privileges", privileges),
        ("tools", tools), *([("clone", clone)] if clones else []),
        ("binlog directory", binlog_dir), ("archive round trip", round_trip),
    ):  # fmt: skip
        if not report.step(f"instance {name}: {label}", step):
            return
