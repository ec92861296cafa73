"""The PitrError hierarchy: every failure pitr reports carries its exit code and an optional hint.

Library code raises these; at the top of a run, ``pitr.entry`` and ``pitr.cli`` hand whatever
reached them to :func:`failure_of` and :func:`report`: one ``error:`` line (and a ``HINT:``
line) on stderr and the exit code. The codes are the contract in docs/exit-codes.md.
"""

from __future__ import annotations

import sys


class PitrError(Exception):
    """Base of every error pitr reports to the user: one line, an exit code, maybe a hint."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def error_dict(exc: PitrError) -> dict[str, object]:
    """The ``"error"`` object of ``--json`` output."""
    return {"message": exc.message, "exit_code": exc.exit_code, "hint": exc.hint}


def failure_of(exc: BaseException) -> tuple[str, str | None, int]:
    """What is reported for an exception that reached the top of a run: message, hint, exit
    code. Anything not a PitrError is the last line of defence: one line, exit 1."""
    if isinstance(exc, PitrError):
        return exc.message, exc.hint, exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None, 130
    message = f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0]
    return message, "run again with --debug for the traceback", 1


def report(message: str, hint: str | None, code: int) -> int:
    """Write ``error: message`` (and ``HINT: hint``) on stderr; the exit code to leave with."""
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"HINT: {hint}\n")
    return code


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so locks are released and temporaries removed."""
    raise Interrupted(f"interrupted by signal {signum}")


class UsageError(PitrError):
    """Bad input: options, targets, configuration (click's own exit code)."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file or environment is invalid."""


class RepositoryError(PitrError):
    """The repository or its catalog is missing, corrupt or of an unsupported format."""

    exit_code = 3


class ObjectNotFound(RepositoryError):
    """A key is not in the repository; raised the same way by every storage driver."""

    def __init__(self, key: str, *, hint: str | None = None) -> None:
        super().__init__(f"object not found in the repository: {key}", hint=hint)
        self.key = key


class ObjectExists(RepositoryError):
    """A create-if-absent write found the key already there."""

    def __init__(self, key: str, *, hint: str | None = None) -> None:
        super().__init__(f"object already exists in the repository: {key}", hint=hint)
        self.key = key


class FormatError(RepositoryError):
    """A file or document is not what it claims to be (corrupt, truncated, unknown format)."""


class NotRecoverable(PitrError):
    """The target cannot be reached: a gap in the logs, outside the window, another system."""

    exit_code = 4


class StorageUnavailable(PitrError):
    """The storage endpoint is unreachable or refuses access (after bounded retries)."""

    exit_code = 5


class PreconditionFailed(PitrError):
    """The instance or the machine is not in the state the command needs."""

    exit_code = 6


class ToolFailed(PitrError):
    """An engine tool (pg_ctl, mariadb-backup, ...) failed."""

    exit_code = 7


class VerificationFailed(PitrError):
    """An object does not read back intact: size, checksum, or it no longer decompresses."""

    exit_code = 8


class LockHeld(PitrError):
    """Another pitr run holds this instance's lock (EX_TEMPFAIL)."""

    exit_code = 75


class Interrupted(PitrError):
    """The run was interrupted by a signal."""

    exit_code = 130
