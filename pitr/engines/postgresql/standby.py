"""Backups taken on a streaming standby (docs/postgresql.md, "Backups from a standby").

The low-level API works in recovery: ``pg_backup_start`` begins at the standby's last
restartpoint, and ``pg_backup_stop`` cannot switch WAL there. Its stop point is the standby's
minimum recovery point, and a recovery from the backup (its label says ``BACKUP FROM:
standby``) ends the backup at the minimum recovery point of the copied ``global/pg_control``:
that file is copied last, after every other, as pg_basebackup does. The segment holding the
stop point must then be completed by the primary and archived by the standby (``archive_mode
= always``): pitr asks the configured primary (``primary_host``) for a WAL switch, or waits for
the primary to complete it on its own (``archive_timeout``). A promotion or a timeline change
before the backup is published refuses it; nothing is published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pitr.config.settings import InstanceSettings
from pitr.domain.positions import format_lsn, parse_lsn, segment_name
from pitr.engines.postgresql.files import DataFile
from pitr.engines.postgresql.server import DEFAULT_OS_USER, ArchiverState, PgServer
from pitr.errors import PreconditionFailed

if TYPE_CHECKING:
    import psycopg

    from pitr.catalog.store import CatalogStore

log = logging.getLogger("pitr.postgresql")
CONTROL = "global/pg_control"
NOTE_EVERY = 30.0  # seconds between "still waiting" lines
NOT_PUBLISHED = "the backup is not published"
#: The segment a switch completed ("- 1": see recovery.secure_newest_wal, 17 names it anew).
SWITCH = "SELECT pg_walfile_name(pg_switch_wal() - 1)"
ARCHIVES = (
    "this standby must archive into the same repository: archive_mode = always and "
    "archive_command = 'pitr wal-push %p' (see pg_stat_archiver and pg_stat_wal_receiver)"
)
ASK_PRIMARY = (
    "set primary_host (with primary_port, primary_user) in [instances.{name}] so that pitr "
    "switches WAL on the primary, or set archive_timeout on the primary"
)


def last_segment(timeline: int, lsn: int, segment_size: int) -> str:
    """The segment holding the WAL just before ``lsn`` (a stop point on a boundary ends the
    segment before it)."""
    return segment_name(timeline, lsn - 1 if lsn % segment_size == 0 else lsn, segment_size)


def _value(conn: Any, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


# -- the primary --------------------------------------------------------------------------


def primary_address(settings: InstanceSettings) -> str:
    return f"{settings.primary_host}:{settings.primary_port or 5432}"


@contextmanager
def primary_session(settings: InstanceSettings) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the configured primary. No password is passed: libpq reads it from
    PGPASSFILE (``~/.pgpass``) or PGPASSWORD, never from a command line."""
    import psycopg

    info: dict[str, Any] = {
        "host": settings.primary_host,
        "dbname": settings.dbname or "postgres",
        "user": settings.primary_user or settings.user or DEFAULT_OS_USER,
        "connect_timeout": 10,
        "application_name": "pitr",
    }
    if settings.primary_port:
        info["port"] = settings.primary_port
    try:
        conn = psycopg.connect(autocommit=True, **info)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreconditionFailed(
            f"instance {settings.name}: cannot connect to its primary at "
            f"{primary_address(settings)}: {first}",
            hint=f"check primary_host, primary_port and primary_user in [instances."
            f"{settings.name}] (the password comes from PGPASSFILE or PGPASSWORD)",
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def check_primary(conn: Any, settings: InstanceSettings, system: str) -> str:
    """The primary is one (not in recovery) and serves this standby's system: its version."""
    version, in_recovery, its_system = conn.execute(
        "SELECT current_setting('server_version'), pg_is_in_recovery(), "
        "(SELECT system_identifier FROM pg_control_system())::text"
    ).fetchone()
    where = f"instance {settings.name}: the primary at {primary_address(settings)}"
    if in_recovery:
        raise PreconditionFailed(
            f"{where} is in recovery itself: it cannot switch WAL",
            hint="point primary_host and primary_port at the server that accepts writes",
        )
    if str(its_system) != system:
        raise PreconditionFailed(
            f"{where} is system {its_system}, this standby is system {system}: not its primary",
            hint=f"set primary_host and primary_port in [instances.{settings.name}] to the "
            "primary this standby streams from",
        )
    return str(version)


def switch_on_primary(settings: InstanceSettings, system: str, after: int, size: int) -> str:
    """Complete the primary's segment holding ``after - 1``: a switch, unless the primary has
    moved past it already. Says which, for the log."""
    with primary_session(settings) as conn:
        check_primary(conn, settings, system)
        current = parse_lsn(_value(conn, "SELECT pg_current_wal_lsn()::text"))
        if (current - 1) // size > (after - 1) // size:
            return f"the primary is past that segment already (at {format_lsn(current)})"
        return f"switched WAL on the primary ({_value(conn, SWITCH)})"


# -- the standby ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Standby:
    """A backup in progress on a standby: what it started on, to compare with later."""

    server: PgServer
    instance: str
    system: str
    timeline: int = 0

    @classmethod
    def of(cls, server: PgServer, conn: Any, instance: str, system: str) -> Standby | None:
        """The standby the session is on, or None on a primary. A standby that does not
        archive itself (``archive_mode`` other than ``always``), or whose configured primary
        does not answer as its primary, is refused (exit 6) before anything is copied."""
        in_recovery, mode = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('archive_mode')"
        ).fetchone()
        if not in_recovery:
            return None
        if mode != "always":
            raise PreconditionFailed(
                f"instance {instance} is a standby with archive_mode = {mode}: it archives no "
                "WAL, so a backup taken on it could never be made consistent from the repository",
                hint="set archive_mode = always and archive_command = 'pitr wal-push %p' on the "
                "standby",
            )
        if server.settings.primary_host:  # before anything is copied for nothing
            with primary_session(server.settings) as primary:
                check_primary(primary, server.settings, system)
        return cls(server, instance, system)

    def started(self, timeline: int) -> Standby:
        return Standby(self.server, self.instance, self.system, timeline)

    @staticmethod
    def held_back(files: list[DataFile]) -> tuple[list[DataFile], list[DataFile]]:
        """(what to copy after everything else: pg_control, the rest)."""
        last = [f for f in files if f.name == CONTROL]
        return last, [f for f in files if f.name != CONTROL]

    def stop(self, conn: Any, sql: str, backup_id: str) -> tuple[Any, ...]:
        """``pg_backup_stop`` (``sql``) on the standby: refused when it was promoted or moved to
        another timeline since the backup started."""
        import psycopg

        try:
            row = conn.execute(sql).fetchone()
        except psycopg.Error as exc:
            if "promoted" in str(exc):
                raise self._promoted(backup_id) from None
            diag = exc.diag
            raise PreconditionFailed(
                f"instance {self.instance}: pg_backup_stop refused backup {backup_id}: "
                f"{diag.message_primary or exc}: {NOT_PUBLISHED}",
                hint=diag.message_hint or "see PostgreSQL's log on the standby",
            ) from None
        self.require_unchanged(conn, backup_id)
        return tuple(row)

    def require_unchanged(self, conn: Any, backup_id: str) -> None:
        """Still in recovery, still on the timeline the backup started on."""
        in_recovery, stop_tli, received_tli = conn.execute(
            "SELECT pg_is_in_recovery(), "
            "(SELECT min_recovery_end_timeline FROM pg_control_recovery()), "
            "(SELECT received_tli FROM pg_stat_wal_receiver)"
        ).fetchone()
        if not in_recovery:
            raise self._promoted(backup_id)
        moved = next((t for t in (stop_tli, received_tli) if t and t != self.timeline), None)
        if moved is not None:
            raise PreconditionFailed(
                f"instance {self.instance}: the standby moved from timeline {self.timeline} to "
                f"{moved} during backup {backup_id} (its primary was replaced): "
                f"{NOT_PUBLISHED}",
                hint="run pitr backup again",
            )

    def _promoted(self, backup_id: str) -> PreconditionFailed:
        return PreconditionFailed(
            f"instance {self.instance} was promoted during backup {backup_id} (it is no longer "
            f"a standby): {NOT_PUBLISHED}",
            hint="run pitr backup again (on the new primary, or on a standby)",
        )

    # -- the WAL the backup needs -------------------------------------------------------

    def wait_for_wal(
        self,
        store: CatalogStore,
        backup_id: str,
        lsns: tuple[int, int],
        segment_size: int,
        archiver: ArchiverState,
    ) -> None:
        """Get the segment holding the stop point (``lsns``: start, stop) completed and into
        the repository, then make sure the one holding the start point is there too (WAL the
        standby received before it archived, e.g. from pg_basebackup, never is)."""
        settings = self.server.settings
        start, stop = lsns
        name = last_segment(self.timeline, stop, segment_size)
        if settings.primary_host:
            done = switch_on_primary(settings, self.system, stop, segment_size)
            log.info("backup %s: %s; waiting for this standby to archive %s",
                     backup_id, done, name)  # fmt: skip
            hint = ARCHIVES
        else:
            log.info(
                "backup %s: waiting up to %g s for WAL segment %s to be completed by the primary "
                "and archived by this standby (no primary_host: pitr cannot switch WAL there)",
                backup_id, settings.archive_wait, name,
            )  # fmt: skip
            hint = ASK_PRIMARY.format(name=settings.name)

        what = f"WAL segment {name}, needed to restore this backup,"
        with self.server.session() as conn:

            def watch() -> None:
                self.require_unchanged(conn, backup_id)

            await_segment(store, self.server, name, archiver, (what, NOT_PUBLISHED, hint), watch)
        first = segment_name(self.timeline, start, segment_size)
        if store.segment_index(first[:8], first) is None:
            raise PreconditionFailed(
                f"WAL segment {first}, where backup {backup_id} starts (this standby's last "
                f"restartpoint), is not in the repository: {NOT_PUBLISHED}",
                hint="the standby archives only the WAL it received after archive_mode = always "
                "was set: run CHECKPOINT on the primary, then pitr backup again",
            )


def await_segment(
    store: CatalogStore,
    server: PgServer,
    name: str,
    archiver: ArchiverState,
    words: tuple[str, str, str],
    watch: Callable[[], None],
) -> None:
    """Wait until segment ``name`` is in the repository, up to ``archive_wait`` seconds.
    ``words``: what the segment is and what a failure means (for the errors), and the hint
    on a timeout; ``watch`` raises when the standby changed under the wait. An archiver
    failing ends the wait at once."""
    what, outcome, hint = words
    wait = server.settings.archive_wait
    started = time.monotonic()
    noted = started
    while store.segment_index(name[:8], name) is None:
        watch()
        failing = server.archiver_failing(archiver)
        if failing:
            raise PreconditionFailed(
                f"{what} cannot reach the repository: this standby's archive_command fails "
                f"({failing}); {outcome}",
                hint="see PostgreSQL's log; archive_command must be 'pitr wal-push %p' with "
                "the same repository",
            )
        now = time.monotonic()
        if now - started > wait:
            raise PreconditionFailed(
                f"{what} was not completed and archived within {wait:g} s: {outcome}",
                hint=hint,
            )
        if now - noted >= NOTE_EVERY:
            noted = now
            log.info("still waiting for %s (%.0f s of %g s)", name, now - started, wait)
        time.sleep(0.2)


# -- pitr check on a standby ------------------------------------------------------------------


def _system(server: PgServer) -> str:
    return str(server.query("SELECT system_identifier FROM pg_control_system()")[0][0])


def check_primary_step(server: PgServer) -> str:
    """``pitr check``: the configured primary answers, is one, and serves this system."""
    settings = server.settings
    if not settings.primary_host:
        return (
            "not configured: a backup waits for its last WAL segment to be completed by the "
            "primary on its own (archive_timeout); set primary_host to have pitr switch WAL there"
        )
    system = _system(server)
    with primary_session(settings) as conn:
        version = check_primary(conn, settings, system)
    return f"PostgreSQL {version} at {primary_address(settings)}, system {system}"


def standby_round_trip(server: PgServer, store: CatalogStore) -> str:
    """``pitr check``: a WAL switch on the primary whose segment this standby must archive
    into the repository; without a primary, the last segment it archived must be there."""
    settings = server.settings
    if not settings.primary_host:
        return _archived_last(server, store)
    system = _system(server)
    archiver = server.archiver_state()
    with primary_session(settings) as conn:
        check_primary(conn, settings, system)
        name = str(_value(conn, SWITCH))

    def watch() -> None:
        if not server.query("SELECT pg_is_in_recovery()")[0][0]:
            raise PreconditionFailed(f"instance {settings.name} was promoted during the check")

    what = f"WAL segment {name}, switched on the primary,"
    words = (what, "nothing was changed", ARCHIVES)
    await_segment(store, server, name, archiver, words, watch)
    return f"switched WAL on the primary; this standby archived {name} into the repository"


def _archived_last(server: PgServer, store: CatalogStore) -> str:
    from pitr.domain.positions import parse_wal_name

    last = server.query("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
    wal = parse_wal_name(str(last or ""))
    name = server.settings.name
    if wal is None or wal.kind != "segment":
        raise PreconditionFailed(
            f"instance {name}: this standby has archived no WAL segment yet, and without "
            "primary_host pitr cannot switch WAL to test the round trip",
            hint=ASK_PRIMARY.format(name=name),
        )
    if store.segment_index(wal.stream, wal.name) is None:
        raise PreconditionFailed(
            f"instance {name}: {wal.name}, the last segment this standby archived, is not in "
            "the repository",
            hint=ARCHIVES,
        )
    return f"no primary_host to switch WAL on; {wal.name}, the last segment archived, is there"
