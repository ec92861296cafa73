"""What every command shares: the invocation (global options, output mode, settings),
common options, and turning errors into one line and an exit code (docs/exit-codes.md).

Kept apart from ``pitr.cli.main`` so that file holds click commands only. Imports stay light:
``pitr wal-push`` runs once per WAL segment.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pitr.errors import failure_of, on_sigterm, report

if TYPE_CHECKING:
    from pitr.catalog.store import CatalogStore
    from pitr.cli.output import Output
    from pitr.config.settings import Settings
    from pitr.domain.targets import Target

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
            from pitr.config.settings import load_settings
            from pitr.logs import redact_secrets

            self._settings = load_settings(self.config_path)
            redact_secrets(self._settings.secrets())
        return self._settings

    @property
    def output(self) -> Output:
        if self._output is None:
            from pitr.cli.output import Output

            self._output = Output(json_mode=self.json_mode, quiet=self.quiet)
        return self._output


_current: Run | None = None  # the current invocation, for error reporting in main()


def begin(ctx: click.Context, config_path: str | None, debug: bool) -> Run:
    """Called by the group: remember the invocation and set up logging."""
    global _current
    from pitr.logs import configure_logging

    _current = ctx.obj = Run(config_path, debug)
    configure_logging(debug=debug, quiet=False)
    return _current


def _set_output_mode(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    run = ctx.find_object(Run)
    if run is not None and value:
        setattr(run, "json_mode" if param.name == "json_mode" else "quiet", True)
        if param.name == "quiet":
            from pitr.logs import configure_logging

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
    from pitr.domain.targets import parse_target
    from pitr.domain.timeutil import utcnow

    zone = options.pop("timezone", None) or run.settings().timezone
    return parse_target(engine, timezone=zone, now=utcnow(), **options)


def catalog_store(run: Run, instance: str | None) -> CatalogStore:
    from pitr.catalog.store import open_catalog

    settings = run.settings()
    return open_catalog(settings, settings.instance(instance))


def short_lived() -> None:
    """For commands that read a catalog and exit: no cyclic garbage worth collecting, while the
    collector would walk a large catalog's objects again and again (a quarter of a plan's time
    with 100,000 segments)."""
    import gc

    gc.disable()


def _report(exc: BaseException, message: str, hint: str | None, code: int) -> int:
    run = _current
    # A command that already printed its JSON result carries the error in it.
    if run is not None and run.json_mode and not (run._output and run._output.emitted):
        import json

        error = {"message": message, "exit_code": code, "hint": hint}
        sys.stdout.write(json.dumps({"error": error}) + "\n")
    if run is not None and run.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return report(message, hint, code)


def run_main(cli: click.Group, argv: list[str] | None = None) -> None:
    """Run the command line; turn errors into one line and an exit code."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = cli.main(args=argv, prog_name="pitr", standalone_mode=False)
    except click.exceptions.Abort as exc:
        sys.exit(_report(exc, "interrupted", None, 130))
    except click.ClickException as exc:
        hint = "see 'pitr --help'" if isinstance(exc, click.UsageError) else None
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f"see '{exc.ctx.command_path} --help'"
        if _current is not None and "--json" in (sys.argv[1:] if argv is None else argv):
            _current.json_mode = True  # refused while parsing, before --json was taken
        sys.exit(_report(exc, exc.format_message(), hint, exc.exit_code))
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(_report(exc, *failure_of(exc)))
    sys.exit(result if isinstance(result, int) else 0)
