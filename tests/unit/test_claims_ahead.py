"""How many claims the share pass holds ahead of its workers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.share.share_pass import CLAIM_AHEAD_SECONDS, CLAIM_LOOKAHEAD, claims_ahead


def test_slow_api_keeps_a_few_claims_per_worker() -> None:
    # 16 workers at 400 ms a call: 40 calls a second, fewer than the floor of 4 per worker.
    assert claims_ahead(40.0, concurrency=16, batch_size=500) == CLAIM_LOOKAHEAD * 16


def test_fast_api_holds_about_a_second_of_calls() -> None:
    assert claims_ahead(300.0, concurrency=16, batch_size=500) == int(300 * CLAIM_AHEAD_SECONDS)


def test_never_more_than_a_batch_unless_the_floor_says_so() -> None:
    assert claims_ahead(5000.0, concurrency=16, batch_size=500) == 500
    assert claims_ahead(5000.0, concurrency=16, batch_size=10) == CLAIM_LOOKAHEAD * 16


def test_before_any_call_has_finished() -> None:
    assert claims_ahead(0.0, concurrency=3, batch_size=500) == CLAIM_LOOKAHEAD * 3


@given(
    pace=st.floats(min_value=0, max_value=1e6),
    concurrency=st.integers(min_value=1, max_value=1000),
    batch_size=st.integers(min_value=1, max_value=10_000),
)
def test_bounded_by_floor_and_cap(pace: float, concurrency: int, batch_size: int) -> None:
    ahead = claims_ahead(pace, concurrency, batch_size)
    floor = CLAIM_LOOKAHEAD * concurrency
    assert ahead >= floor
    assert ahead <= max(floor, batch_size)
    assert ahead <= max(floor, int(pace * CLAIM_AHEAD_SECONDS))
