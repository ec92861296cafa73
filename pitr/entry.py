"""The ``pitr`` executable.

PostgreSQL runs ``pitr wal-push %p`` (archive_command) and ``pitr wal-fetch %f %p``
(restore_command) once per WAL segment and waits for each. Their plain forms are answered
here, before the command line (click, every command's imports) is loaded, through
:mod:`pitr.commands.wal`, which ``pitr.cli`` uses too (``wal-push --async`` is answered from
the status file the archiving worker wrote). Anything else — other options,
``--json``, ``--debug``, ``--help`` — goes to ``pitr.cli``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import NoReturn

_FAST_COMMANDS = {"wal-push": 1, "wal-fetch": 2}  # command: its number of arguments


@dataclass
class _Call:
    command: str
    config: str | None = None
    instance: str | None = None
    background: bool = False  # wal-push --async
    quiet: bool = False
    spool: str | None = None  # wal-fetch --spool
    args: list[str] = field(default_factory=list)


def _parse(argv: list[str]) -> _Call | None:
    """The call when ``argv`` is a plain form this module answers, else None."""
    config = None
    if argv[:1] == ["--config"] and len(argv) > 1:
        config, argv = argv[1], argv[2:]
    elif argv[:1] and argv[0].startswith("--config="):
        config, argv = argv[0].partition("=")[2], argv[1:]
    if not argv or argv[0] not in _FAST_COMMANDS:
        return None
    call = _Call(argv[0], config, os.environ.get("PITR_INSTANCE") or None)
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in ("-i", "--instance", "--spool") and not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if name in ("-i", "--instance"):
            call.instance = value
        elif name == "--spool" and call.command == "wal-fetch":
            call.spool = value
        elif arg == "--async" and call.command == "wal-push":
            call.background = True
        elif arg in ("-q", "--quiet"):
            call.quiet = True
        elif arg.startswith("-"):
            return None
        else:
            call.args.append(arg)
    return call if len(call.args) == _FAST_COMMANDS[call.command] else None


def _run(call: _Call) -> int:
    from pitr.commands.wal import fetch, push, push_async
    from pitr.config.settings import load_settings
    from pitr.logs import configure_logging, redact_secrets

    configure_logging(debug=False, quiet=call.quiet)
    settings = load_settings(call.config, parse_keys=False)  # (open_postgres parses them)
    redact_secrets(settings.secrets())
    if call.command == "wal-fetch":
        name, dest = call.args
        return 0 if fetch(settings, call.instance, name, dest, call.spool) else 1
    if call.background:
        text = push_async(settings, call.instance, call.args[0])
    else:
        text = push(settings, call.instance, call.args[0])[1]
    if not call.quiet:
        sys.stdout.write(text + "\n")
    return 0


def _answer(call: _Call) -> int:
    """Run a fast form; errors become one line (and a HINT line) and the exit code. The cyclic
    garbage collector is off: the process lives for one segment, reference counting frees what
    it allocates, and the collector's passes over the modules imported cost a push ~7 ms of
    CPU, more when it encrypts (docs/encryption.md, "What it costs")."""
    import gc
    import signal

    gc.disable()

    from pitr.errors import failure_of, on_sigterm, report

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _run(call)
    except (Exception, KeyboardInterrupt) as exc:
        return report(*failure_of(exc))


def _leave(code: int) -> NoReturn:
    """Exit as soon as the output is out. The interpreter's own exit would tear down every
    module imported, ~14 ms of a push's CPU, and a fast form leaves nothing to clean up; only a
    thread still running (none should be) gets the ordinary exit, which waits for it."""
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
    except (OSError, ValueError):  # a closed or broken pipe: let the ordinary exit say so
        sys.exit(code)
    if threading.active_count() == 1:
        os._exit(code)
    sys.exit(code)


def main() -> None:
    call = _parse(sys.argv[1:])
    if call is not None:
        _leave(_answer(call))
    from pitr.cli.main import main as cli_main

    cli_main()
