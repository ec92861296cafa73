"""``pitr check`` for a PostgreSQL instance: reachable, WAL archiving set up for pitr, and one
real round trip (a WAL switch whose segment must arrive in the repository). On a standby: its
primary too, and the round trip through both (see ``standby.py``)."""

from __future__ import annotations

from pitr.catalog.store import CatalogStore
from pitr.domain.checks import CheckReport
from pitr.domain.sizes import human_bytes
from pitr.engines.postgresql.server import PgServer
from pitr.errors import PreconditionFailed


def check_instance(server: PgServer, store: CatalogStore, report: CheckReport) -> None:
    name = store.instance
    settings: dict[str, str] = {}

    def reachable() -> str:
        rows = server.query(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('server_version', 'server_version_num', 'wal_level', 'archive_mode', "
            "'archive_command', 'data_directory')"
        )
        settings.update(rows)
        if server.query("SELECT pg_is_in_recovery()")[0][0]:
            settings["standby"] = "yes"
        role = ", a standby" if settings.get("standby") else ""
        where = settings.get("data_directory")
        return f"PostgreSQL {settings.get('server_version')} at {where}{role}"

    def versions() -> str:
        from pitr.engines.postgresql.versions import major_of

        major = major_of(int(settings.get("server_version_num", "0")))
        return server.require_major(major, f"instance {name}", ["pg_waldump"])

    def wal_level() -> str:
        level = settings.get("wal_level", "")
        if level not in ("replica", "logical"):
            raise PreconditionFailed(
                f"instance {name}: wal_level is {level!r}", hint="set wal_level = replica"
            )
        return level

    def archive_mode() -> str:
        mode = settings.get("archive_mode", "")
        if settings.get("standby") and mode != "always":
            raise PreconditionFailed(
                f"instance {name}: archive_mode is {mode!r} on a standby, which archives only "
                "with 'always'",
                hint="set archive_mode = always on the standby",
            )
        if mode not in ("on", "always"):
            raise PreconditionFailed(
                f"instance {name}: archive_mode is {mode!r}", hint="set archive_mode = on"
            )
        return mode

    def archive_command() -> str:
        command = settings.get("archive_command", "")
        if "pitr" not in command or "wal-push" not in command:
            raise PreconditionFailed(
                f"instance {name}: archive_command is {command!r}, not pitr",
                hint="set archive_command = 'pitr wal-push %p'",
            )
        return command

    def primary() -> str:
        from pitr.engines.postgresql.standby import check_primary_step

        return check_primary_step(server)

    def round_trip() -> str:
        from pitr.engines.postgresql.recovery import secure_newest_wal
        from pitr.engines.postgresql.standby import standby_round_trip

        if settings.get("standby"):
            return standby_round_trip(server, store)
        segment = secure_newest_wal(server, store)
        return f"switched WAL; {segment} arrived in the repository"

    def full_backup() -> str:
        from pitr.planner.common import fulls, without_full

        system = str(server.query("SELECT system_identifier FROM pg_control_system()")[0][0])
        catalog = store.load()
        problem = without_full(catalog, system)
        if problem:
            raise PreconditionFailed(
                f"instance {name}: {problem}",
                hint="take a new full backup: pitr backup --type full",
            )
        count = len(fulls(catalog, system))
        return f"system {system}: {count} full backup(s)" if count else f"system {system}: none yet"

    if not report.step(f"instance {name}: reachable", reachable):
        return
    steps = [("version", versions), ("wal_level", wal_level)]
    if _has_slot(server):
        steps.append(("replication slot", lambda: _slot_state(server, name)))
    steps += [("archive_mode", archive_mode), ("archive_command", archive_command)]
    if settings.get("standby"):
        steps.append(("primary", primary))
    for label, step in (
        *steps,
        ("archive round trip", round_trip),
        ("full backup of this system", full_backup),
    ):
        if not report.step(f"instance {name}: {label}", step):
            return


def _slot_state(server: PgServer, name: str) -> str:
    """The slot ``archive --follow`` streams from: active, the WAL it holds; lost WAL fails."""
    from pitr.engines.postgresql.follow import slot_lag

    lag = slot_lag(server)
    assert lag is not None
    if lag.wal_status == "lost":
        raise PreconditionFailed(
            f"instance {name}: replication slot {lag.name} lost WAL it needed",
            hint="restart pitr archive --follow, then take a new full backup",
        )
    held = "?" if lag.retained_bytes is None else human_bytes(lag.retained_bytes)
    state = "active" if lag.active else "inactive (no archive --follow running)"
    return f"{lag.name}: {state}, holds {held} of WAL ({lag.wal_status})"


def _has_slot(server: PgServer) -> bool:
    """Does the instance have the slot of ``archive --follow`` (shown by ``check`` then)?"""
    from pitr.engines.postgresql.follow import slot_lag

    try:
        return slot_lag(server) is not None
    except PreconditionFailed:  # unreachable: the first step says so
        return False
