"""Retry policy for Linq calls, kept pure so callers own the loop and the clock.

The client itself never retries: whether a failed share may be repeated depends on the ledger
(at-most-once beats at-least-once), which only the caller knows.
"""

from __future__ import annotations

import math
import random

from scheduler.errors import (
    CardSetupIncomplete,
    CardWriteThrottled,
    LinqAPIError,
    LinqError,
    LinqTransportError,
    RateLimited,
    ServerError,
)

# 2**64 times any sensible base is far past any cap; stopping there avoids float overflow.
_MAX_EXPONENT = 64


def is_retryable(exc: LinqError) -> bool:
    """Whether repeating the same call soon, with backoff, is reasonable.

    Rate limits are not retried in place: the caller must wait out ``retry_after`` for that
    resource. 4004 is not either: retrying extends the upstream limit, so it needs minutes.
    """
    if isinstance(exc, LinqTransportError):
        return True
    if isinstance(exc, RateLimited | CardWriteThrottled):
        return False
    if isinstance(exc, ServerError | CardSetupIncomplete):
        return True
    if isinstance(exc, LinqAPIError):
        if exc.code is not None and 3000 <= exc.code <= 3999:
            return True
        if exc.status is not None and 500 <= exc.status <= 599:
            return True
    return False


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest delay :func:`backoff_delay` may return for ``attempt`` (0 = first retry)."""
    _check(attempt, base, cap)
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``.

    Full jitter spreads the retries of many chats that failed together (one Linq outage)
    instead of sending them back in synchronized waves.
    """
    ceiling = backoff_ceiling(attempt, base=base, cap=cap)
    return min(ceiling, max(0.0, rng.uniform(0.0, ceiling)))


def _check(attempt: int, base: float, cap: float) -> None:
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not 0 <= base < math.inf:
        raise ValueError(f"base must be a finite number >= 0, got {base}")
    if not cap >= 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
