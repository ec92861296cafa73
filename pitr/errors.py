"""The PitrError hierarchy: every failure pitr reports carries its exit code and an optional hint.

Library code raises these; only ``pitr.cli`` turns them into a message and an exit status.
The codes are the contract in SPEC.md (see docs/exit-codes.md).
"""

from __future__ import annotations


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
