"""The forecast replays the rule over records alone: no ledger, ``now`` given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.core.forecast import ChatRuleFacts, Forecast, replay, verdict_of
from scheduler.core.rule import ChatFacts, LineFacts
from scheduler.ledger.models import ChatStatus
from tests.factories import policy

# A Monday noon: inside the 09:00-20:00 UTC window of the factories' policy.
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LINE = "+14155550100"


def chat(claim_expires_at: datetime | None = None) -> ChatRuleFacts:
    facts = ChatFacts(
        service="iMessage",
        is_group=False,
        status=ChatStatus.active.value,
        recipient="+12125550100",
        first_outbound_at=NOW - timedelta(days=1),
        last_outbound_at=NOW - timedelta(days=1),
        last_inbound_at=None,
        last_shared_at=None,
        share_count=0,
    )
    line = LineFacts(card_active=True, paused=False, timezone=None)
    return ChatRuleFacts(
        chat_id="chat-1",
        line=LINE,
        chat=facts,
        line_facts=line,
        line_paused=False,
        line_card_state="active",
        claim_expires_at=claim_expires_at,
    )


def two_days() -> Forecast:
    return Forecast(now=NOW, until=NOW + timedelta(hours=48), hours=48)


def test_a_due_chat_is_replayed_once_a_day_inside_the_horizon() -> None:
    result = two_days()
    replay(chat(), policy(), result, chat_limit=10)
    assert [p.at for p in result.chats] == [
        NOW,
        datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        datetime(2026, 3, 4, 9, 0, tzinfo=UTC),
    ]
    assert [p.reason for p in result.chats] == ["due", "later", "later"]
    assert result.due_now == 1
    assert result.total == 3


def test_a_chat_a_pass_holds_is_in_flight_not_forecast() -> None:
    result = two_days()
    replay(chat(claim_expires_at=NOW + timedelta(seconds=30)), policy(), result, chat_limit=10)
    assert (result.in_flight, result.total) == (1, 0)
    lapsed = two_days()
    replay(chat(claim_expires_at=NOW - timedelta(seconds=1)), policy(), lapsed, chat_limit=10)
    assert (lapsed.in_flight, lapsed.total) == (0, 3)


def test_the_listed_chats_stop_at_the_limit_and_say_so() -> None:
    result = two_days()
    replay(chat(), policy(), result, chat_limit=2)
    assert len(result.chats) == 2
    assert result.chats_truncated
    assert result.total == 3


def test_the_verdict_names_the_line_state() -> None:
    verdict = verdict_of(chat(), policy(), NOW)
    assert verdict.verdict.due
    assert (verdict.line, verdict.line_paused, verdict.card_state) == (LINE, False, "active")
