"""The card write budget: 3 writes per 10 minutes per number, waits after refusals."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler.core.card_budget import (
    BLOCKED,
    DEFAULT_RETRY_AFTER,
    THROTTLE_WAIT_MAX,
    WINDOW_MARGIN,
    WRITE_WINDOW,
    WriteBudget,
    WriteResult,
    classify,
    dump_log,
    parse_log,
    retry_wait,
    throttle_wait,
)
from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardExists,
    CardNotActive,
    CardSetupIncomplete,
    CardWriteThrottled,
    LinqAPIError,
    LinqTransportError,
    RateLimited,
    ServerError,
    Unauthorized,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=25)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (None, WriteResult.ok),
        (CardExists("exists", status=409, code=2014), WriteResult.exists),
        (CardNotActive("no card", status=404, code=2012), WriteResult.missing),
        (RateLimited("slow down", status=429, code=1007), WriteResult.rate_limited),
        (CardWriteThrottled("upstream", status=503, code=4004), WriteResult.throttled),
        (CardSetupIncomplete("setup", status=500, code=2022), WriteResult.incomplete),
        (ServerError("boom", status=500, code=3006), WriteResult.error),
        (LinqTransportError("reset", sent=True), WriteResult.error),
        (BadRequest("bad phone", status=400, code=1002), WriteResult.rejected),
        (BadRequest("missing field", status=400, code=1003), WriteResult.rejected),
        (AccessDenied("not yours", status=403, code=2005), WriteResult.rejected),
        (LinqAPIError("gone", status=410), WriteResult.rejected),
        (Unauthorized("token", status=401, code=2004), WriteResult.unauthorized),
    ],
)
def test_every_answer_maps_to_one_result(error: Exception | None, result: WriteResult) -> None:
    assert classify(error) == result  # type: ignore[arg-type]


def _spent(*offsets: timedelta) -> WriteBudget:
    budget = WriteBudget()
    for offset in offsets:
        at = T0 + offset
        budget = budget.reserve(at, LEASE).settle(at, at, WriteResult.ok)
    return budget


def test_a_fourth_write_waits_until_the_first_leaves_the_window() -> None:
    budget = _spent(timedelta(0), MIN, 2 * MIN)
    now = T0 + 3 * MIN
    assert not budget.can_write(now)
    assert budget.allowed_at(now) == T0 + WRITE_WINDOW + WINDOW_MARGIN
    assert not budget.can_write(T0 + WRITE_WINDOW)
    assert budget.can_write(T0 + WRITE_WINDOW + WINDOW_MARGIN)
    with pytest.raises(ValueError, match="no card write allowed before"):
        budget.reserve(now, LEASE)
    assert len(budget.recent(now)) == 3
    assert len(budget.recent(T0 + 30 * MIN)) == 0


def test_a_write_in_flight_holds_off_other_writers_for_its_lease() -> None:
    reserved = WriteBudget().reserve(T0, LEASE)
    assert reserved.next_write_at == T0 + LEASE
    assert not reserved.can_write(T0 + LEASE / 2)
    assert reserved.can_write(T0 + LEASE)


def test_the_stamp_moves_to_the_end_of_the_call() -> None:
    finished = T0 + timedelta(seconds=7)
    budget = WriteBudget().reserve(T0, LEASE).settle(T0, finished, WriteResult.ok)
    assert budget.writes == (finished,)
    assert budget.next_write_at is None
    assert budget.failures == 0


def test_429_waits_retry_after_or_a_minute_without_one() -> None:
    budget = WriteBudget().reserve(T0, LEASE)
    hinted = budget.settle(T0, T0, WriteResult.rate_limited, retry_after=420.0)
    assert hinted.next_write_at == T0 + timedelta(seconds=420)
    assert hinted.failures == 0
    bare = budget.settle(T0, T0, WriteResult.rate_limited)
    assert bare.next_write_at == T0 + DEFAULT_RETRY_AFTER


def test_4004_waits_at_least_ten_minutes_and_longer_each_time() -> None:
    budget = WriteBudget()
    waits = []
    at = T0
    for _ in range(8):
        budget = budget.reserve(at, LEASE).settle(at, at, WriteResult.throttled)
        assert budget.next_write_at is not None
        waits.append(budget.next_write_at - at)
        at = budget.next_write_at
    assert waits[0] >= timedelta(minutes=10)
    assert waits[:5] == [timedelta(minutes=m) for m in (10, 20, 40, 80, 160)]
    assert all(w <= THROTTLE_WAIT_MAX for w in waits)
    assert waits == sorted(waits)
    # A success starts the count again.
    budget = budget.reserve(at, LEASE).settle(at, at, WriteResult.ok)
    assert budget.failures == 0
    assert budget.next_write_at is None


def test_4004_honours_a_longer_retry_after() -> None:
    budget = WriteBudget().reserve(T0, LEASE)
    settled = budget.settle(T0, T0, WriteResult.throttled, retry_after=3600.0)
    assert settled.next_write_at == T0 + timedelta(hours=1)


def test_2022_and_server_errors_retry_after_a_growing_wait() -> None:
    base = timedelta(seconds=30)
    budget = (
        WriteBudget().reserve(T0, LEASE).settle(T0, T0, WriteResult.incomplete, retry_base=base)
    )
    assert budget.next_write_at == T0 + base
    at = T0 + base
    budget = budget.reserve(at, LEASE).settle(at, at, WriteResult.error, retry_base=base)
    assert budget.next_write_at == at + 2 * base
    assert budget.failures == 2
    assert retry_wait(base, 50) == timedelta(hours=1)
    assert throttle_wait(50) == THROTTLE_WAIT_MAX


def test_a_refused_card_is_blocked() -> None:
    budget = WriteBudget().reserve(T0, LEASE).settle(T0, T0, WriteResult.rejected)
    assert budget.blocked
    assert budget.next_write_at == BLOCKED
    assert not budget.can_write(T0 + timedelta(days=3650))


def test_2014_and_2012_allow_an_immediate_follow_up_within_the_budget() -> None:
    budget = WriteBudget().reserve(T0, LEASE).settle(T0, T0, WriteResult.exists)
    assert budget.can_write(T0)
    assert budget.writes == (T0,)  # the refused POST still counted


def test_the_log_round_trips_and_tolerates_garbage() -> None:
    stamps = (T0, T0 + timedelta(seconds=1.5))
    assert parse_log(dump_log(reversed(stamps))) == stamps
    assert parse_log("[]") == ()
    assert parse_log(None) == ()
    assert parse_log("not json") == ()
    assert WriteBudget.from_row('["2026-03-02T12:00:00"]', None, None).writes == (T0,)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=900),  # seconds until the next attempt
            st.floats(min_value=0.0, max_value=10.0),  # call latency, seconds
            st.floats(min_value=0.0, max_value=1.0),  # where in the call Linq counts it
            st.sampled_from(list(WriteResult)),
        ),
        max_size=60,
    )
)
@example([(0, 0.0, 0.0, WriteResult.ok)] * 4)  # writes stamped at the very same instant
def test_writes_taken_only_when_allowed_never_exceed_linq_s_limit(
    attempts: list[tuple[int, float, float, WriteResult]],
) -> None:
    """Linq counts a write when it receives it, somewhere inside the call; it must never 429."""
    budget = WriteBudget()
    linq: deque[datetime] = deque()
    at = T0
    for gap, latency, where, result in attempts:
        at += timedelta(seconds=gap)
        if not budget.can_write(at):
            continue
        budget = budget.reserve(at, LEASE)
        finished = at + timedelta(seconds=latency)
        received = at + timedelta(seconds=latency * where)
        while linq and linq[0] + WRITE_WINDOW <= received:
            linq.popleft()
        assert len(linq) < 3, "Linq would have answered 429"
        linq.append(received)
        budget = budget.settle(at, finished, result)
        at = finished
