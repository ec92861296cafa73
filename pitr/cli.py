"""The ``pitr`` command line: click commands only — parse, call, render.

This module is on the hot path of ``archive_command`` (one process per WAL segment), so it
imports only click at start-up; each command imports what it needs. It is also the only place
where errors become messages and exit codes (SPEC.md, docs/exit-codes.md).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pitr import __version__
from pitr.errors import Interrupted, PitrError

if TYPE_CHECKING:
    from pitr.config import Settings
    from pitr.output import Output

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


_run: Run | None = None  # the current invocation, for error reporting in main()


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


def instance_option(f: F) -> F:
    return click.option(
        "--instance",
        "-i",
        envvar="PITR_INSTANCE",
        metavar="NAME",
        help="Instance from the config (optional when only one is configured).",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="FILE", help="Configuration file (pitr.toml).")
@click.option("--debug", is_flag=True, help="Debug logging; tracebacks on errors.")
@click.version_option(
    __version__, "--version", "-V", prog_name="pitr", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Point-in-time recovery for PostgreSQL, MariaDB and MySQL."""
    global _run
    from pitr.output import configure_logging

    _run = ctx.obj = Run(config_path, debug)
    configure_logging(debug=debug, quiet=False)


@cli.command()
@instance_option
@output_options
@click.pass_obj
def check(run: Run, instance: str | None) -> None:
    """Check the configuration and the repository (write, list, read back, delete a probe)."""
    from pitr.check import CheckReport, check_repository
    from pitr.storage import open_storage

    settings = run.settings()
    report = CheckReport()
    report.add("config", True, f"{settings.source} is valid")
    names = [settings.instance(instance).name] if instance else sorted(settings.instances)
    for name in names:
        report.add(f"instance {name}", True, f"engine {settings.instances[name].engine}")
    report.step("repository open", lambda: open_storage(settings.repository).describe())
    if report.error is None:
        check_repository(open_storage(settings.repository), report)
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


def _report(exc: BaseException, code: int, message: str, hint: str | None) -> int:
    run = _run
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn errors into one line and an exit code."""
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
        sys.exit(_report(exc, exc.exit_code, exc.format_message(), hint))
    except KeyboardInterrupt as exc:
        sys.exit(_report(exc, 130, "interrupted", None))
    except Exception as exc:  # the last line of defence: one line, exit 1
        message = f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0]
        sys.exit(_report(exc, 1, message, "run again with --debug for the traceback"))
    sys.exit(result if isinstance(result, int) else 0)
