from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    ChatNotFound,
    LinqAPIError,
    LinqError,
    LinqTransportError,
    OptedOut,
    RateLimited,
    ServerError,
    Unauthorized,
)
from scheduler.linq.retry import backoff_ceiling, backoff_delay, is_retryable


class FixedRandom(random.Random):
    """Always draws the same fraction, to pin the jitter to a known point of its range."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (LinqTransportError("connect refused", sent=False), True),
        (LinqTransportError("read timeout", sent=True), True),
        (ServerError("internal", status=500, code=3006), True),
        (ServerError("bad gateway", status=502), True),
        (CardSetupIncomplete("not done", status=500, code=2022), True),
        (LinqAPIError("odd", status=503), True),
        (LinqAPIError("odd", status=500, code=3001), True),
        (RateLimited("slow down", status=429, code=1007, retry_after=30), False),
        (CardWriteThrottled("upstream throttled", status=503, code=4004), False),
        (BadRequest("bad", status=400, code=1002), False),
        (Unauthorized("token", status=401, code=2004), False),
        (AccessDenied("denied", status=403, code=2005), False),
        (OptedOut("stop", status=403, code=2024), False),
        (ChatNotFound("gone", status=404, code=2001), False),
        (CardNotActive("inactive", status=404, code=2012), False),
        (CardExists("exists", status=409, code=2014), False),
        (LinqAPIError("bare 404", status=404), False),
        (LinqAPIError("schema mismatch", status=200), False),
        (LinqError("cursor repeated"), False),
    ],
)
def test_is_retryable(exc: LinqError, expected: bool) -> None:
    assert is_retryable(exc) is expected


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0, max_value=60, allow_nan=False),
    cap=st.floats(min_value=0, max_value=3600, allow_nan=False),
    seed=st.integers(),
)
def test_delay_stays_within_zero_and_cap(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= cap
    assert delay <= backoff_ceiling(attempt, base=base, cap=cap)


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.001, max_value=10, allow_nan=False),
    cap=st.floats(min_value=0.001, max_value=3600, allow_nan=False),
)
def test_ceiling_doubles_until_the_cap(attempt: int, base: float, cap: float) -> None:
    here = backoff_ceiling(attempt, base=base, cap=cap)
    after = backoff_ceiling(attempt + 1, base=base, cap=cap)
    assert here <= after <= cap
    if here < cap:
        assert after == min(cap, here * 2)
    else:
        assert after == cap


def test_jitter_top_grows_with_attempt_then_sticks_at_cap() -> None:
    rng = FixedRandom(0.999)
    tops = [backoff_delay(n, base=0.5, cap=30, rng=rng) for n in range(10)]
    # 0.5 * 2**6 = 32 is the first ceiling past the cap of 30.
    assert tops[:6] == pytest.approx([0.999 * 0.5 * 2**n for n in range(6)])
    assert tops[6:] == pytest.approx([0.999 * 30] * 4)
    assert tops == sorted(tops)


def test_full_jitter_can_reach_zero() -> None:
    assert backoff_delay(5, base=1, cap=10, rng=FixedRandom(0.0)) == 0.0


def test_same_seed_gives_same_sequence() -> None:
    first = [backoff_delay(n, base=1, cap=60, rng=random.Random(7)) for n in range(5)]
    second = [backoff_delay(n, base=1, cap=60, rng=random.Random(7)) for n in range(5)]
    assert first == second


@pytest.mark.parametrize(
    ("attempt", "base", "cap"),
    [
        (-1, 1.0, 10.0),
        (0, -1.0, 10.0),
        (0, 1.0, -1.0),
        (0, float("nan"), 10.0),
        (0, 1.0, float("nan")),
    ],
)
def test_invalid_arguments_are_rejected(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        backoff_delay(attempt, base=base, cap=cap, rng=random.Random(0))
