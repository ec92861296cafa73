"""What every command shares: the invocation (global options, output mode, settings),
common options, and turning errors into one line and an exit code (SPEC.md).

Kept apart from ``pitr.cli`` so that file holds click commands only. Imports stay light:
``pitr wal-push`` runs once per WAL segment.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pitr.errors import Interrupted, PitrError

if TYPE_CHECKING:
    from pitr.catalog.store import CatalogStore
    from pitr.config import Settings
    from pitr.locks import InstanceLock
    from pitr.output import Output
    from pitr.targets import Target

F = TypeVar("F", bound=Callable[..., Any])


class Run:
    """What one invocation knows: global options, output mode, settings (loaded once)."""

    def __init__(self, config_path: str | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self.json_mode = False
        self.quiet = False
        self._settings: Settings | None = None
        self._output: Output | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from pitr.config import load_settings
            from pitr.output import redact_secrets

            self._settings = load_settings(self.config_path)
            redact_secrets(self._settings.secrets())
        return self._settings

    @property
    def output(self) -> Output:
        if self._output is None:
            from pitr.output import Output

            self._output = Output(json_mode=self.json_mode, quiet=self.quiet)
        return self._output


_current: Run | None = None  # the current invocation, for error reporting in main()


def begin(ctx: click.Context, config_path: str | None, debug: bool) -> Run:
    """Called by the group: remember the invocation and set up logging."""
    global _current
    from pitr.output import configure_logging

    _current = ctx.obj = Run(config_path, debug)
    configure_logging(debug=debug, quiet=False)
    return _current


def _set_output_mode(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    run = ctx.find_object(Run)
    if run is not None and value:
        setattr(run, "json_mode" if param.name == "json_mode" else "quiet", True)
        if param.name == "quiet":
            from pitr.output import configure_logging

            configure_logging(debug=run.debug, quiet=True)


def output_options(f: F) -> F:
    """``--json`` and ``--quiet``, accepted by every command."""
    f = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        expose_value=False,
        callback=_set_output_mode,
        help="Only warnings and errors on stderr; no text result.",
    )(f)
    return click.option(
        "--json",
        "json_mode",
        is_flag=True,
        expose_value=False,
        callback=_set_output_mode,
        help="Machine-readable result on stdout (nothing else is written there).",
    )(f)


def lock_wait_option(f: F) -> F:
    return click.option(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        show_default=True,
        help="Wait this long for another run holding the instance lock.",
    )(f)


def instance_option(f: F) -> F:
    return click.option(
        "--instance",
        "-i",
        envvar="PITR_INSTANCE",
        metavar="NAME",
        help="Instance from the config (optional when only one is configured).",
    )(f)


def target_options(f: F) -> F:
    """The recovery target options shared by ``plan``, ``recover`` and ``restore``."""
    options = [
        click.option("--at", metavar="TIME", help="State as of TIME (ISO 8601 with offset)."),
        click.option("--xid", metavar="XID", help="PostgreSQL: up to this transaction id."),
        click.option("--lsn", metavar="LSN", help="PostgreSQL: up to this WAL location."),
        click.option("--restore-point", metavar="NAME", help="PostgreSQL: a restore point."),
        click.option("--gtid", metavar="GTID", help="MariaDB/MySQL: up to this transaction."),
        click.option("--position", metavar="FILE:POS", help="MariaDB/MySQL: binlog position."),
        click.option("--latest", is_flag=True, help="Everything in the repository."),
        click.option("--exclusive", is_flag=True, help="Stop just before the target."),
        click.option(
            "--timeline", metavar="N|current|latest", help="PostgreSQL: the timeline to follow."
        ),
        click.option("--timezone", metavar="ZONE", help="Zone of a TIME given without offset."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def target_of(run: Run, engine: str, options: dict[str, Any]) -> Target:
    from pitr.targets import parse_target
    from pitr.timeutil import utcnow

    zone = options.pop("timezone", None) or run.settings().timezone
    return parse_target(engine, timezone=zone, now=utcnow(), **options)


def catalog_store(run: Run, instance: str | None) -> CatalogStore:
    from pitr.planning import open_catalog

    settings = run.settings()
    return open_catalog(settings, settings.instance(instance))


def instance_lock(
    run: Run, store: CatalogStore, command: str, wait: float, resource: str = "instance"
) -> InstanceLock:
    """The lock of ``store``'s instance, as configured (``lock_dir``, ``[locks]``)."""
    from pitr.locks import InstanceLock

    settings = run.settings()
    return InstanceLock(
        store.storage,
        store.instance,
        settings.lock_dir,
        command,
        wait=wait,
        stale_after=settings.locks.stale_hours * 3600,
        resource=resource,
    )


@contextlib.contextmanager
def recorded(run: Run, instance: str | None, command: str) -> Iterator[None]:
    """Record how this ``backup``/``archive``/``verify`` run ends in the instance's state file
    (``pitr.runstate``) and refresh the ``[status] textfile``; neither can change the run's own
    outcome. A run refused because another holds the lock did not happen: not recorded."""
    from pitr.errors import LockHeld
    from pitr.timeutil import utcnow

    settings = run.settings()
    name = settings.instance(instance).name
    started = utcnow()
    code: int | None = 0
    message = None
    try:
        yield
    except LockHeld:
        code = None
        raise
    except PitrError as exc:
        code, message = exc.exit_code, exc.message
        raise
    except (KeyboardInterrupt, click.exceptions.Abort):
        code, message = 130, "interrupted"
        raise
    except Exception as exc:
        code, message = 1, f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0]
        raise
    finally:
        if code is not None:
            _record(settings, name, command, started, code, message)


def _record(
    settings: Settings, name: str, command: str, started: Any, code: int, message: str | None
) -> None:
    import logging

    from pitr.metrics import write_textfiles
    from pitr.runstate import record_run
    from pitr.timeutil import utcnow

    log = logging.getLogger("pitr")
    finished = utcnow()
    try:
        record_run(settings.lock_dir, name, command, started, finished, code, message)
        write_textfiles(settings, [name], finished)
    except OSError as exc:
        log.warning("could not record this run in %s: %s", settings.lock_dir, exc.strerror)
    except PitrError as exc:
        log.warning("%s", exc.message)


def short_lived() -> None:
    """For commands that read a catalog and exit: no cyclic garbage worth collecting, while the
    collector would walk a large catalog's objects again and again (a quarter of a plan's time
    with 100,000 segments)."""
    import gc

    gc.disable()


def engine_of(run: Run, instance: str | None) -> tuple[Any, Any]:
    """The instance's engine and catalog store."""
    from pitr.engines.base import engine_for

    settings = run.settings()
    inst = settings.instance(instance)
    return engine_for(settings, inst), catalog_store(run, instance)


def recovery_text(result: dict[str, Any]) -> str:
    r = result["recovery"]
    lines = [f"{r['instance']}: {r['status']} in {r['datadir']}"]
    if r.get("port"):
        lines.append(f"  running on port {r['port']}, out of recovery")
    diff = f" + differential {r['differential']}" if r.get("differential") else ""
    lines.append(f"  from backup {r['recovered_from_backup']}{diff}")
    if r.get("point_in_time"):
        lines.append(f"  last transaction applied at {r['point_in_time']}")
    if r.get("previous_datadir"):
        lines.append(f"  previous data directory kept at {r['previous_datadir']}")
    return "\n".join(lines)


def _report(exc: BaseException, code: int, message: str, hint: str | None) -> int:
    run = _current
    # A command that already printed its JSON result carries the error in it.
    if run is not None and run.json_mode and not (run._output and run._output.emitted):
        import json

        error = {"message": message, "exit_code": code, "hint": hint}
        sys.stdout.write(json.dumps({"error": error}) + "\n")
    if run is not None and run.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"HINT: {hint}\n")
    return code


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"interrupted by signal {signum}")


def run_main(cli: click.Group, argv: list[str] | None = None) -> None:
    """Run the command line; turn errors into one line and an exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = cli.main(args=argv, prog_name="pitr", standalone_mode=False)
    except PitrError as exc:
        sys.exit(_report(exc, exc.exit_code, exc.message, exc.hint))
    except click.exceptions.Abort as exc:
        sys.exit(_report(exc, 130, "interrupted", None))
    except click.ClickException as exc:
        hint = "see 'pitr --help'" if isinstance(exc, click.UsageError) else None
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f"see '{exc.ctx.command_path} --help'"
        if _current is not None and "--json" in (sys.argv[1:] if argv is None else argv):
            _current.json_mode = True  # refused while parsing, before --json was taken
        sys.exit(_report(exc, exc.exit_code, exc.format_message(), hint))
    except KeyboardInterrupt as exc:
        sys.exit(_report(exc, 130, "interrupted", None))
    except Exception as exc:  # the last line of defence: one line, exit 1
        message = f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0]
        sys.exit(_report(exc, 1, message, "run again with --debug for the traceback"))
    sys.exit(result if isinstance(result, int) else 0)
