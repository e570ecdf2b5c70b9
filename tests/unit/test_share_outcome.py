"""What each share result means: the error table of linq-api.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.core.share_outcome import Decision, decide
from scheduler.core.status import CardState, ChatStatus, Outcome
from scheduler.errors import (
    AccessDenied,
    BadRequest,
    CardNotActive,
    ChatNotFound,
    LinqError,
    LinqTransportError,
    OptedOut,
    RateLimited,
    ServerError,
    Unauthorized,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _decide(error: LinqError | None, *, maybe_applied: bool = False, failures: int = 0) -> Decision:
    return decide(
        error,
        now=NOW,
        maybe_applied=maybe_applied,
        consecutive_failures=failures,
        failure_backoff=timedelta(minutes=5),
    )


def test_success_counts_as_shared() -> None:
    d = _decide(None)
    assert (d.outcome, d.counts_as_shared) == (Outcome.shared, True)


def test_rate_limit_waits_retry_after() -> None:
    d = _decide(RateLimited("slow down", status=429, code=1007, retry_after=90))
    assert d.outcome == Outcome.rate_limited
    assert not d.counts_as_shared
    assert d.not_before == NOW + timedelta(seconds=90)


def test_rate_limit_after_a_lost_answer_means_it_landed() -> None:
    d = _decide(RateLimited("slow", status=429, code=1007, retry_after=200), maybe_applied=True)
    assert (d.outcome, d.counts_as_shared) == (Outcome.ambiguous, True)


def test_timeout_after_sending_is_ambiguous_and_counts() -> None:
    d = _decide(LinqTransportError("read timeout", sent=True))
    assert (d.outcome, d.counts_as_shared) == (Outcome.ambiguous, True)


def test_connect_failure_is_a_plain_failure_with_growing_backoff() -> None:
    first = _decide(LinqTransportError("refused", sent=False))
    third = _decide(LinqTransportError("refused", sent=False), failures=2)
    assert first.outcome == Outcome.failed and not first.counts_as_shared
    assert first.not_before == NOW + timedelta(minutes=5)
    assert third.not_before == NOW + timedelta(minutes=20)


@pytest.mark.parametrize(
    ("error", "status", "card", "stop"),
    [
        (CardNotActive("x", status=404, code=2012), None, CardState.unknown, False),
        (ChatNotFound("x", status=404, code=2001), ChatStatus.gone, None, False),
        (OptedOut("x", status=403, code=2024), ChatStatus.opted_out, None, False),
        (AccessDenied("x", status=403, code=2005), None, CardState.failed, False),
        (Unauthorized("x", status=401, code=2004), None, None, True),
    ],
)
def test_error_codes_map_to_actions(
    error: LinqError, status: ChatStatus | None, card: CardState | None, stop: bool
) -> None:
    d = _decide(error)
    assert not d.counts_as_shared
    assert d.chat_status == status
    assert d.line_card_state == card
    assert d.stop_all is stop


def test_bad_request_is_not_retried_today() -> None:
    d = _decide(BadRequest("no", status=400, code=1002))
    assert d.outcome == Outcome.rejected
    assert d.not_before == NOW + timedelta(hours=24)


def test_server_error_fails_and_marks_failure() -> None:
    d = _decide(ServerError("boom", status=500, code=3006))
    assert d.outcome == Outcome.failed
    assert d.failed
