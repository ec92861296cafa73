"""A streaming standby of a harness PostgreSQL primary: ``pg_basebackup -R`` through a physical
replication slot, run as the ``postgres`` OS user on its own port and directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .common import ServerStartError, wait_until
from .postgres import OS_USER, PostgresServer


def start_standby(
    primary: PostgresServer,
    archive_command: str = "/bin/true",
    *,
    gucs: Mapping[str, object] | None = None,
    port: int | None = None,
    prepare: Callable[[PostgresServer], None] | None = None,
    timeout: float = 60.0,
) -> PostgresServer:
    """Clone the running ``primary`` into a new cluster that streams from it (slot
    ``standby_<port>``), archiving with ``archive_mode = always`` and ``archive_command``;
    returns it started and streaming (on ``port``, or a free one). ``prepare`` runs before it
    starts (e.g. to write the configuration its archive_command reads). Destroy it like any
    harness server."""
    standby = PostgresServer(
        archive_command=archive_command, env=primary.env, major=primary.major,
        bindir=primary.bindir, port=port,
    )  # fmt: skip
    slot = f"standby_{standby.port}"
    cloned = standby.run_as_postgres(
        [
            standby.bindir / "pg_basebackup", "-h", primary.host, "-p", str(primary.port),
            "-U", OS_USER, "-D", standby.datadir, "-R", "-X", "stream", "-C", "-S", slot,
            "--checkpoint=fast", "--no-sync",
        ],
        check=False, timeout=timeout,
    )  # fmt: skip
    if cloned.returncode != 0:
        raise ServerStartError(
            f"standby of {primary}", f"pg_basebackup exit {cloned.returncode}", cloned.stderr
        )
    standby.configure(
        {
            "port": standby.port,
            "unix_socket_directories": str(standby.socket_dir),
            "hot_standby": True,
            "archive_mode": "always",
            "archive_command": archive_command,
            **(gucs or {}),
        }
    )
    if prepare is not None:
        prepare(standby)
    standby.start(wait_for_primary=False, timeout=timeout)

    def streaming() -> bool:
        rows = standby.sql("SELECT status FROM pg_stat_wal_receiver")
        return bool(rows) and rows[0][0] == "streaming"

    wait_until(streaming, timeout, f"{standby} to stream", on_timeout=standby.log_tail)
    return standby


def replay_caught_up(
    primary: PostgresServer, standby: PostgresServer, timeout: float = 60.0
) -> str:
    """Wait until ``standby`` has replayed everything ``primary`` has written so far."""
    lsn = str(primary.sql("SELECT pg_current_wal_lsn()::text")[0][0])

    def replayed() -> bool:
        return bool(standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn)[0][0])

    wait_until(replayed, timeout, f"{standby} to replay {lsn}", on_timeout=standby.log_tail)
    return lsn
