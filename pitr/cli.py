"""The ``pitr`` command line: click commands only — parse, call, render.

This module is on the hot path of ``archive_command`` (one process per WAL segment), so it
imports only click at start-up; each command imports what it needs. Errors become messages and
exit codes in ``pitr.cli_support.main`` (SPEC.md, docs/exit-codes.md).
"""

from __future__ import annotations

from typing import Any

import click

from pitr import __version__
from pitr.cli_support import (
    Run,
    begin,
    catalog_store,
    engine_of,
    instance_lock,
    instance_option,
    lock_wait_option,
    output_options,
    recovery_text,
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
    from pitr.check import run_checks

    report = run_checks(run.settings(), instance)
    out = run.output
    out.emit(report.to_dict(), text=None)
    out.table(
        ["check", "result", "ms", "detail"],
        [
            [i.name, "ok" if i.ok else "FAILED", i.to_dict()["ms"] or "", i.detail]
            for i in report.items
        ],
    )
    if report.error is not None:
        raise report.error


@cli.command(name="list")
@instance_option
@output_options
@click.pass_obj
def list_(run: Run, instance: str | None) -> None:
    """Backups, log coverage and the recoverable window."""
    short_lived()
    from pitr.inventory import describe
    from pitr.views import backups_rows, logs_rows, window_lines

    listing = describe(catalog_store(run, instance).load())
    out = run.output
    out.emit(listing)
    out.table(["backup", "type", "parent", "start", "end", "size"], backups_rows(listing))
    out.table(
        ["stream", "first log", "last log", "logs", "size", "last commit"], logs_rows(listing)
    )
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
    from pitr.errors import NotRecoverable
    from pitr.planning import make_plan
    from pitr.views import plan_text

    store = catalog_store(run, instance)
    target = target_of(run, store.engine, options)
    result = make_plan(store, target).plan
    run.output.emit(result.to_dict(), text=plan_text(result))
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
    from pitr.errors import VerificationFailed
    from pitr.verify import contents_checked, objects_to_verify, verify_all

    store = catalog_store(run, instance)
    objects = objects_to_verify(store.load(), backup_id)
    total = sum(o.size for o in objects)
    out = run.output
    with out.progress(total, "verify") as progress:
        failures = verify_all(
            store, objects, workers=run.settings().repository.concurrency, progress=progress
        )
    result = {
        "verified": len(objects) - len(failures),
        "objects": len(objects),
        "bytes": total,
        "failed": [{"key": f.key, "problem": f.problem} for f in failures],
        "contents_checked": contents_checked(objects),
    }
    lines = [f"FAILED {f.problem}" for f in failures]
    lines.append(f"{len(objects) - len(failures)} of {len(objects)} objects verified intact")
    out.emit(result, text="\n".join(lines))
    if failures:
        raise VerificationFailed(
            f"{len(failures)} object(s) failed verification, first: {failures[0].problem}"
        )


@cli.command()
@instance_option
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@lock_wait_option
@output_options
@click.pass_obj
def expire(run: Run, instance: str | None, dry_run: bool, lock_wait: float) -> None:
    """Apply the retention policy; never removes what the recoverable window needs."""
    from pitr.retention import apply_expiry, check_policy, expiry_of
    from pitr.timeutil import utcnow
    from pitr.views import human_bytes

    policy = run.settings().retention
    check_policy(policy)
    store = catalog_store(run, instance)
    if dry_run:  # a read: no lock
        expiry = expiry_of(store, policy, utcnow())
    else:
        with instance_lock(run, store, "expire", lock_wait):
            expiry = expiry_of(store, policy, utcnow())
            apply_expiry(store, expiry)
    verb = "would delete" if dry_run else "deleted"
    result = {
        "dry_run": dry_run,
        "kept": [b.id for b in expiry.keep],
        "expired_backups": [b.id for b in expiry.backups],
        "expired_logs": [s.name for s in expiry.segments],
        "unfinished_backups": sorted(expiry.orphans),
        "bytes": expiry.bytes,
    }
    text = (
        f"{verb} {len(expiry.backups)} backup(s), {len(expiry.segments)} log(s) "
        f"({human_bytes(expiry.bytes)}) and {len(expiry.orphans)} unfinished backup(s); "
        f"kept {len(expiry.keep)} backup(s)"
    )
    run.output.emit(result, text=text)


@cli.command()
@instance_option
@output_options
@click.pass_obj
def status(run: Run, instance: str | None) -> int:
    """Health for monitoring: exit 0 OK, 1 WARN, 2 CRIT."""
    short_lived()
    from pitr.inventory import STATES, health, worst
    from pitr.planner import window
    from pitr.timeutil import utcnow

    settings = run.settings()
    catalog = catalog_store(run, instance).load()
    checks = health(catalog, settings.status, utcnow())
    state = worst(checks)
    result = {
        "status": state,
        "checks": [
            {"name": c.name, "status": c.state, "detail": c.detail, "age_seconds": c.age_seconds}
            for c in checks
        ],
        "window": window(catalog).to_dict(),
    }
    summary = "; ".join(f"{c.name} {c.state}: {c.detail}" for c in checks)
    run.output.emit(result, text=f"PITR {state} - {summary}")
    return STATES.index(state)


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
    from pitr.catalog.rebuild import rebuild_catalog

    store = catalog_store(run, instance)
    with instance_lock(run, store, "catalog rebuild", lock_wait):
        counts = rebuild_catalog(store)
    run.output.emit(counts, text=f"rebuilt: {counts['backups']} backup(s), {counts['logs']} log(s)")


@cli.command()
@instance_option
@click.option("--type", "kind", type=click.Choice(["full", "diff"]), help="Default: full when "
              "there is no full backup yet, else diff.")  # fmt: skip
@lock_wait_option
@output_options
@click.pass_obj
def backup(run: Run, instance: str | None, kind: str | None, lock_wait: float) -> None:
    """Take a backup and publish it to the repository."""
    from pitr.catalog.summary import compact_all
    from pitr.timeutil import format_time
    from pitr.views import human_bytes

    engine, store = engine_of(run, instance)
    with instance_lock(run, store, "backup", lock_wait):
        result = engine.backup(store, kind)
        compact_all(store.storage, store.layout)
    doc = {
        "backup": {
            "id": result.id,
            "type": result.type,
            "parent": result.parent,
            "start": result.start,
            "end": result.end,
            "start_time": format_time(result.start_time),
            "end_time": format_time(result.end_time),
            "bytes": result.bytes,
            "raw_bytes": result.raw_bytes,
        }
    }
    run.output.emit(
        doc,
        text=f"backup {result.id} ({result.type}) published: {human_bytes(result.raw_bytes)} "
        f"stored as {human_bytes(result.bytes)}, consistent at {result.end}",
    )


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

    from pitr.walcommands import push, push_async

    if background:
        text = push_async(run.settings(), instance, path)
        run.output.emit({"file": Path(path).name, "archived": True}, text=text)
        return
    pushed, text = push(run.settings(), instance, path)
    run.output.emit({"file": Path(path).name, "archived": pushed}, text=text)


@cli.command(name="wal-push-worker", hidden=True)
@instance_option
@click.option("--pg-wal", "pg_wal", required=True, metavar="DIR")
@click.pass_obj
def wal_push_worker(run: Run, instance: str | None, pg_wal: str) -> None:
    """The resident worker behind 'wal-push --async' (started by it, not by people)."""
    from pathlib import Path

    from pitr.engines.postgresql.asyncpush import serve, spool_for
    from pitr.walcommands import open_postgres

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
    from pitr.walcommands import fetch

    found = fetch(run.settings(), instance, name, dest, spool)
    run.output.emit({"file": name, "found": found})
    return 0 if found else 1


@cli.command()
@instance_option
@click.option("--follow", is_flag=True, help="Keep streaming (MariaDB/MySQL binlogs).")
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
    from pitr.errors import UsageError

    if seconds is not None and not follow:
        raise UsageError("--for applies to --follow")
    engine, store = engine_of(run, instance)
    # A follower runs for days: it holds its own lock, so backups and expiry still run.
    with instance_lock(
        run,
        store,
        "archive --follow" if follow else "archive",
        lock_wait,
        resource="follow" if follow else "instance",
    ):
        result = engine.archive(store, follow=follow, duration=seconds)
    text = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items())
    run.output.emit(result, text=text)


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

    engine, store = engine_of(run, instance)
    target = target_of(run, store.engine, options)
    result = engine.restore(store, target, Path(dest).absolute(), port)
    run.output.emit(result, text=recovery_text(result))


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

    from pitr.errors import NotRecoverable, UsageError
    from pitr.planning import make_plan
    from pitr.views import plan_text

    engine, store = engine_of(run, instance)
    target = target_of(run, store.engine, options)
    if dry_run:
        plan = make_plan(store, target).plan
        run.output.emit(plan.to_dict(), text=plan_text(plan))
        if not plan.recoverable:
            raise NotRecoverable(f"not recoverable: {plan.problems[0]}")
        return
    if not yes:
        if not _sys.stdin.isatty():
            raise UsageError(
                "recover replaces the instance's data: confirm with --yes (no TTY to ask on)"
            )
        click.confirm(
            f"Recover instance {store.instance} in place to {target.describe()}? Its data "
            "directory will be stopped and set aside",
            abort=True,
        )
    with instance_lock(run, store, "recover", lock_wait):
        result = engine.recover(store, target)
    run.output.emit(result, text=recovery_text(result))


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
    from pitr.eventfilter import compile_grep, matching
    from pitr.timeutil import parse_time

    zone = timezone or run.settings().timezone
    since = parse_time(start, timezone=zone) if start else None
    until = parse_time(end, timezone=zone) if end else None
    pattern = compile_grep(grep)
    engine, store = engine_of(run, instance)
    found = matching(engine.events(store, store.load(), since, until, rows=rows), pattern)
    out = run.output
    out.emit({"events": found})
    out.table(
        ["time", "xid/gtid", "position", "log", "summary"],
        [[e["time"], e["xid"] or e["gtid"], e["position"], e["log"], e["summary"]] for e in found],
    )


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_options
@click.pass_obj
def inspect(run: Run, files: tuple[str, ...]) -> None:
    """Describe local binlog, WAL segment and timeline history files; no server needed."""
    from pitr.inspect import inspect_files
    from pitr.views import inspect_rows

    result = inspect_files(list(files))
    out = run.output
    out.emit(result)
    out.table(["file", "kind", "first", "last", "transactions", "state"], inspect_rows(result))


def main(argv: list[str] | None = None) -> None:
    """Entry point (``pitr``)."""
    run_main(cli, argv)
