"""Bounded retries with backoff for storage requests (tenacity).

A driver classifies each failure: *transient* (connection refused, timeouts, 5xx, throttling:
retried until the time budget runs out, then ``StorageUnavailable``) or final (raised at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from pitr.errors import PitrError, StorageUnavailable

T = TypeVar("T")
log = logging.getLogger("pitr.storage")


class Transient(Exception):
    """Marks a failure worth retrying; ``cause`` is the original error, ``what`` a description."""

    def __init__(self, what: str, cause: BaseException | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.cause = cause


def with_retries(
    operation: Callable[[], T],
    *,
    budget: float,
    describe: str,
    classify: Callable[[BaseException], BaseException],
    hint: str | None = None,
) -> T:
    """Run ``operation``; ``classify`` maps a raised error to ``Transient`` (retry) or to the
    error to raise. When the budget (seconds) is spent, raise ``StorageUnavailable``."""
    from tenacity import (
        RetryCallState,
        Retrying,
        retry_if_exception_type,
        stop_after_delay,
        wait_exponential,
        wait_random,
    )

    def attempt() -> T:
        try:
            return operation()
        except PitrError:
            raise
        except Exception as exc:
            mapped = classify(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; retrying (attempt %d)", describe, exc, state.attempt_number)

    retrying = Retrying(
        stop=stop_after_delay(budget),
        wait=wait_exponential(multiplier=0.1, max=min(5.0, max(budget / 4, 0.1)))
        + wait_random(0, 0.1),
        retry=retry_if_exception_type(Transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except Transient as exc:
        raise StorageUnavailable(
            f"{describe}: {exc.what} (gave up after {budget:g} s of retries)",
            hint=hint or "check that the storage endpoint is up and reachable from this host",
        ) from exc
