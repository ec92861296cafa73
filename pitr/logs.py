"""Log lines on stderr (``2026-11-25T13:00:00.123Z INFO message``), configured secrets
redacted. Light: the plain ``wal-push`` / ``wal-fetch`` forms configure logging before anything
else is loaded."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class _Redact(logging.Filter):
    """Replaces every configured secret in log messages, whatever logged it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


_handler: logging.Handler | None = None


def configure_logging(*, debug: bool, quiet: bool) -> None:
    """Log lines go to stderr: ``2026-11-25T13:00:00.123Z INFO message``."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(_handler)
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    root.setLevel(logging.WARNING)  # third-party libraries stay quiet unless --debug
    logging.getLogger("pitr").setLevel(level)
    if debug:
        root.setLevel(logging.DEBUG)


def redact_secrets(secrets: Sequence[str]) -> None:
    """Install the redaction filter on the handler once the configuration is known."""
    if _handler is not None:
        _handler.addFilter(_Redact(secrets))
