"""The ``pitr`` command line: click commands only — parse, call, render.

This module is on the hot path of ``archive_command`` (one process per WAL segment), so it
imports only click at start-up; each command imports what it needs. Errors become messages and
exit codes in ``pitr.cli.support.run_main`` (docs/exit-codes.md).
"""

from __future__ import annotations

from typing import Any

import click

from pitr import __version__
from pitr.cli.support import (
    Run,
    begin,
    catalog_store,
    instance_option,
    lock_wait_option,
    output_options,
    run_main,
    short_lived,
    target_of,
    target_options,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="FILE", help="Configuration file (pitr.toml).")
@click.option("--debug", is_flag=True, help="Debug logging; tracebacks on errors.")
@click.version_option(
    __version__, "--version", "-V", prog_name="pitr", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Point-in-time recovery for PostgreSQL, MariaDB and MySQL."""
    begin(ctx, config_path, debug)


@cli.command()
@instance_option
@output_options
@click.pass_obj
def check(run: Run, instance: str | None) -> None:
    """Check the configuration and the repository (write, list, read back, delete a probe)."""
    from pitr.cli import documents
    from pitr.cli.render import CHECK_COLUMNS, check_rows
    from pitr.commands.check import run_checks

    report = run_checks(run.settings(), instance)
    out = run.output
    out.emit(documents.check(report), text=None)
    out.table(CHECK_COLUMNS, check_rows(report))
    if report.error is not None:
        raise report.error


@cli.command(name="list")
@instance_option
@output_options
@click.pass_obj
def list_(run: Run, instance: str | None) -> None:
    """Backups, log coverage and the recoverable window."""
    short_lived()
    from pitr.catalog import openlogs
    from pitr.cli import documents
    from pitr.cli.render import BACKUP_COLUMNS, LOG_COLUMNS, backups_rows, logs_rows, window_lines

    store = catalog_store(run, instance)
    catalog = store.load_current()  # with the partial segment or binlog archive --follow ships
    listing = documents.listing(catalog, openlogs.opened(store.layout, catalog))
    out = run.output
    out.emit(listing)
    out.table(BACKUP_COLUMNS, backups_rows(listing))
    out.table(LOG_COLUMNS, logs_rows(listing))
    for line in window_lines(listing):
        out.say(line)


@cli.command()
@instance_option
@target_options
@output_options
@click.pass_obj
def plan(run: Run, /, instance: str | None, **options: Any) -> None:
    """The restore plan for the target, proven against the repository; touches nothing."""
    short_lived()
    from pitr.cli import documents
    from pitr.cli.render import plan_text
    from pitr.commands.plan import make_plan
    from pitr.errors import NotRecoverable

    store = catalog_store(run, instance)
    target = target_of(run, store.engine, options)
    result = make_plan(store, target)
    run.output.emit(documents.plan(result), text=plan_text(result))
    if not result.recoverable:
        raise NotRecoverable(
            f"not recoverable: {result.problems[0]}",
            hint=f"recoverable window: {result.window.describe()}",
        )


@cli.command()
@instance_option
@click.option("--backup", "backup_id", metavar="ID", help="Only this backup's chain and logs.")
@output_options
@click.pass_obj
def verify(run: Run, instance: str | None, backup_id: str | None) -> None:
    """Read back every object of the chain(s) and the logs; check sizes and checksums."""
    from pitr.cli import documents
    from pitr.cli.render import verify_text
    from pitr.commands.runs import recorded
    from pitr.commands.verify import objects_to_verify, verify_objects

    store = catalog_store(run, instance)
    with recorded(run.settings(), instance, "verify"):
        objects = objects_to_verify(store.load(), backup_id)
        out = run.output
        with out.progress(sum(o.size for o in objects), "verify") as progress:
            workers = run.settings().repository.concurrency
            result = verify_objects(store, objects, workers=workers, progress=progress)
        out.emit(documents.verify(result), text=verify_text(result))
        error = result.error()
        if error is not None:
            raise error


@cli.command()
@instance_option
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@lock_wait_option
@output_options
@click.pass_obj
def expire(run: Run, instance: str | None, dry_run: bool, lock_wait: float) -> None:
    """Apply the retention policy; never removes what the recoverable window needs."""
    from pitr.cli import documents
    from pitr.cli.render import expire_text
    from pitr.commands.expire import expire

    result = expire(run.settings(), instance, dry_run, lock_wait)
    run.output.emit(documents.expire(result), text=expire_text(result))


@cli.command()
@instance_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "prometheus"]),
    default="text",
    show_default=True,
    help="prometheus: metrics in the Prometheus text format (every instance when several are "
    "configured and none is chosen).",
)
@output_options
@click.pass_obj
def status(run: Run, instance: str | None, fmt: str) -> int:
    """Health for monitoring: exit 0 OK, 1 WARN, 2 CRIT."""
    short_lived()
    from pitr.cli import documents
    from pitr.cli.render import status_text
    from pitr.commands.metrics import prometheus_status, write_textfiles
    from pitr.commands.status import STATES, status
    from pitr.domain.timeutil import utcnow
    from pitr.errors import UsageError

    settings = run.settings()
    if fmt == "prometheus":
        if run.json_mode:
            raise UsageError("--json and --format prometheus exclude each other")
        text, state = prometheus_status(settings, instance, utcnow())
        if not run.quiet:
            click.echo(text, nl=False)
        return STATES.index(state)
    health = status(settings, instance)
    run.output.emit(documents.status(health), text=status_text(health))
    write_textfiles(settings, [settings.instance(instance).name], utcnow())
    return health.exit_code


@cli.group()
def catalog() -> None:
    """Maintain the catalog summary."""


@catalog.command()
@instance_option
@lock_wait_option
@output_options
@click.pass_obj
def rebuild(run: Run, instance: str | None, lock_wait: float) -> None:
    """Recompute the catalog summary from the per-object documents."""
    from pitr.cli.render import rebuild_text
    from pitr.commands.rebuild import rebuild

    counts = rebuild(run.settings(), instance, lock_wait)
    run.output.emit(counts, text=rebuild_text(counts))


@cli.command()
@instance_option
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), help="Default: full "
              "when there is no full backup yet, else diff. incr (PostgreSQL): only the blocks "
              "changed since the newest backup of any type.")  # fmt: skip
@lock_wait_option
@output_options
@click.pass_obj
def backup(run: Run, instance: str | None, kind: str | None, lock_wait: float) -> None:
    """Take a backup and publish it to the repository."""
    from pitr.cli import documents
    from pitr.cli.render import backup_text
    from pitr.commands.backup import backup
    from pitr.commands.runs import recorded

    with recorded(run.settings(), instance, "backup"):
        result = backup(run.settings(), instance, kind, lock_wait)
    run.output.emit(documents.backup(result), text=backup_text(result))


@cli.command(name="wal-push")
@instance_option
@click.option(
    "--async",
    "background",
    is_flag=True,
    help="Hand the file to a resident worker that archives ahead, several at once.",
)
@click.argument("path", type=click.Path(dir_okay=False))
@output_options
@click.pass_obj
def wal_push(run: Run, instance: str | None, background: bool, path: str) -> None:
    """PostgreSQL archive_command: 'pitr wal-push %p' (or 'pitr wal-push --async %p')."""
    from pathlib import Path

    from pitr.cli import documents
    from pitr.commands.wal import push, push_async

    if background:
        text = push_async(run.settings(), instance, path)
        run.output.emit(documents.wal_push(Path(path).name, True), text=text)
        return
    pushed, text = push(run.settings(), instance, path)
    run.output.emit(documents.wal_push(Path(path).name, pushed), text=text)


@cli.command(name="wal-push-worker", hidden=True)
@instance_option
@click.option("--pg-wal", "pg_wal", required=True, metavar="DIR")
@click.pass_obj
def wal_push_worker(run: Run, instance: str | None, pg_wal: str) -> None:
    """The resident worker behind 'wal-push --async' (started by it, not by people)."""
    from pathlib import Path

    from pitr.commands.wal import open_postgres
    from pitr.engines.postgresql.asyncpush import serve, spool_for

    settings = run.settings()
    engine, store = open_postgres(settings, instance, "wal-push")
    workers = settings.repository.concurrency
    serve(
        spool_for(settings.spool_dir, store.instance),
        Path(pg_wal),
        lambda path: engine.wal_push(store, path),
        workers,
    )


@cli.command(name="wal-fetch")
@instance_option
@click.option("--spool", metavar="DIR", help="Prefetched WAL from a running recovery.")
@click.argument("name")
@click.argument("dest", type=click.Path(dir_okay=False))
@output_options
@click.pass_obj
def wal_fetch(run: Run, instance: str | None, spool: str | None, name: str, dest: str) -> int:
    """PostgreSQL restore_command: 'pitr wal-fetch %f %p'; exit 1 when not archived."""
    from pitr.cli import documents
    from pitr.commands.wal import fetch

    found = fetch(run.settings(), instance, name, dest, spool)
    run.output.emit(documents.wal_fetch(name, found))
    return 0 if found else 1


@cli.command()
@instance_option
@click.option(
    "--follow",
    is_flag=True,
    help="Keep streaming (MariaDB/MySQL binlogs; PostgreSQL WAL through a replication slot).",
)
@click.option(
    "--for", "seconds", type=float, metavar="SECONDS", help="With --follow: stop after this long."
)
@lock_wait_option
@output_options
@click.pass_obj
def archive(
    run: Run, instance: str | None, follow: bool, seconds: float | None, lock_wait: float
) -> None:
    """Ship the transaction logs not yet in the repository; safe to run every minute."""
    from pitr.cli import documents
    from pitr.cli.render import archive_text
    from pitr.commands.archive import archive
    from pitr.commands.runs import recorded

    with recorded(run.settings(), instance, "archive"):
        doc = documents.archive(archive(run.settings(), instance, follow, seconds, lock_wait))
    run.output.emit(doc, text=archive_text(doc))


@cli.command()
@instance_option
@target_options
@click.option("--to", "dest", required=True, metavar="DIR", help="New or empty directory.")
@click.option("--port", type=int, metavar="N", help="Start the restored server on this port.")
@output_options
@click.pass_obj
def restore(run: Run, /, instance: str | None, dest: str, port: int | None, **options: Any) -> None:
    """Restore into a new directory beside the instance (and start it with --port)."""
    from pathlib import Path

    from pitr.cli import documents
    from pitr.cli.render import recovery_text
    from pitr.commands.recover import restore

    settings = run.settings()
    target = target_of(run, settings.instance(instance).engine, options)
    doc = documents.recovery(restore(settings, instance, target, Path(dest).absolute(), port))
    run.output.emit(doc, text=recovery_text(doc))


@cli.command()
@instance_option
@target_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@lock_wait_option
@output_options
@click.pass_obj
def recover(
    run: Run, /, instance: str | None, yes: bool, dry_run: bool, lock_wait: float, **options: Any
) -> None:
    """Recover the instance in place; its data directory is kept aside, never deleted."""
    import sys as _sys

    from pitr.cli import documents
    from pitr.cli.render import plan_text, recovery_text
    from pitr.commands.plan import plan
    from pitr.commands.recover import recover
    from pitr.errors import NotRecoverable, UsageError

    settings = run.settings()
    inst = settings.instance(instance)
    target = target_of(run, inst.engine, options)
    if dry_run:
        result = plan(settings, instance, target)
        run.output.emit(documents.plan(result), text=plan_text(result))
        if not result.recoverable:
            raise NotRecoverable(f"not recoverable: {result.problems[0]}")
        return
    if not yes:
        if not _sys.stdin.isatty():
            raise UsageError(
                "recover replaces the instance's data: confirm with --yes (no TTY to ask on)"
            )
        click.confirm(
            f"Recover instance {inst.name} in place to {target.describe()}? Its data "
            "directory will be stopped and set aside",
            abort=True,
        )
    doc = documents.recovery(recover(settings, instance, target, lock_wait))
    run.output.emit(doc, text=recovery_text(doc))


@cli.command()
@instance_option
@click.option("--from", "start", metavar="TIME", help="Only transactions at or after TIME.")
@click.option("--to", "end", metavar="TIME", help="Only transactions at or before TIME.")
@click.option("--grep", metavar="REGEX", help="Only transactions whose line matches.")
@click.option("--rows", is_flag=True, help="PostgreSQL: add row counts (reads the WAL).")
@click.option("--timezone", metavar="ZONE", help="Zone of a TIME given without offset.")
@output_options
@click.pass_obj
def events(
    run: Run,
    instance: str | None,
    start: str | None,
    end: str | None,
    grep: str | None,
    rows: bool,
    timezone: str | None,
) -> None:
    """The transactions in the archived logs, to find the bad one."""
    from pitr.cli import documents
    from pitr.cli.render import EVENT_COLUMNS, events_rows
    from pitr.commands.events import events

    found = events(run.settings(), instance, start, end, grep, rows, timezone)
    out = run.output
    out.emit(documents.events(found))
    out.table(EVENT_COLUMNS, events_rows(found))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_options
@click.pass_obj
def inspect(run: Run, files: tuple[str, ...]) -> None:
    """Describe local binlog, WAL segment and timeline history files; no server needed."""
    from pitr.cli import documents
    from pitr.cli.render import INSPECT_COLUMNS, inspect_rows
    from pitr.commands.inspect import inspect_files

    found = inspect_files(files)
    out = run.output
    out.emit(documents.inspect(found))
    out.table(INSPECT_COLUMNS, inspect_rows(found))


def main(argv: list[str] | None = None) -> None:
    """Entry point (``pitr``)."""
    run_main(cli, argv)
