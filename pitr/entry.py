"""The ``pitr`` executable.

``pitr wal-push --async %p`` runs once per WAL segment, and PostgreSQL's archiver waits for it;
most of the time its answer is already in a status file the archiving worker wrote. That one
form is answered here, before the command line (click, every command's imports) is loaded.
Anything else — other options, ``--json``, an error to explain — goes to ``pitr.cli``.
"""

from __future__ import annotations

import os
import sys


def _async_push(argv: list[str]) -> int | None:
    """Exit code for ``[--config F] wal-push --async [-q|--quiet] [-i|--instance N] PATH``,
    or None when ``argv`` is anything else (or something needs explaining)."""
    config = None
    if argv[:1] == ["--config"] and len(argv) > 1:
        config, argv = argv[1], argv[2:]
    if argv[:1] != ["wal-push"]:
        return None
    instance = os.environ.get("PITR_INSTANCE") or None
    background, paths, args = False, [], argv[1:]
    while args:
        arg = args.pop(0)
        if arg == "--async":
            background = True
        elif arg in ("-q", "--quiet"):
            continue
        elif arg in ("-i", "--instance") and args:
            instance = args.pop(0)
        elif arg.startswith("-"):
            return None
        else:
            paths.append(arg)
    if not background or len(paths) != 1:
        return None
    from pathlib import Path

    from pitr.config import load_settings
    from pitr.engines.postgresql.asyncpush import spool_for, wait_for
    from pitr.errors import PitrError

    try:
        settings = load_settings(config)
        inst = settings.instance(instance)
    except PitrError:
        return None
    if inst.engine != "postgresql":
        return None
    source = None if settings.source == "environment" else str(Path(settings.source).absolute())
    code, message = wait_for(spool_for(settings.spool_dir, inst.name), Path(paths[0]), source,
                             inst.name)  # fmt: skip
    if code:
        sys.stderr.write(f"error: {message}\n")
    return code


def main() -> None:
    code = _async_push(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from pitr.cli import main as cli_main

    cli_main()
