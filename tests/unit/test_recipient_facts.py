"""Recipient facts merge the same whatever order they arrive in (pure code)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scheduler.core.status import ChatStatus
from scheduler.ledger.recipients import RecipientFacts, chat_status_for

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HANDLE = "+12125550101"

times = st.none() | st.integers(0, 20).map(lambda m: T0 + timedelta(minutes=m))
facts = st.builds(
    lambda o, i, b: RecipientFacts(HANDLE, opted_out_at=o, last_inbound_at=i, blocked_at=b),
    times,
    times,
    st.none() | st.just(T0),
)


def _merge_all(items: list[RecipientFacts]) -> RecipientFacts:
    merged = RecipientFacts(HANDLE)
    for item in items:
        merged = merged.merged(item)
    return merged


@given(st.lists(facts, max_size=6), st.randoms())
def test_any_arrival_order_gives_the_same_facts_and_status(
    items: list[RecipientFacts], rnd: random.Random
) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    once = _merge_all(items)
    assert _merge_all(shuffled) == once
    assert _merge_all(items + items) == once  # repeats change nothing
    assert _merge_all(shuffled).status == once.status


def test_the_latest_message_decides_and_ties_go_to_the_opt_out() -> None:
    stop = RecipientFacts(HANDLE, opted_out_at=T0, last_inbound_at=T0)
    assert stop.status == ChatStatus.opted_out
    hello = RecipientFacts(HANDLE, last_inbound_at=T0 + timedelta(seconds=1))
    assert stop.merged(hello).status == ChatStatus.active
    older = RecipientFacts(HANDLE, last_inbound_at=T0 - timedelta(minutes=1))
    assert stop.merged(older).status == ChatStatus.opted_out
    blocked = RecipientFacts(HANDLE, blocked_at=T0)
    assert stop.merged(hello).merged(blocked).status == ChatStatus.blocked


def test_chats_follow_their_recipient_except_paused_and_gone() -> None:
    opted = RecipientFacts(HANDLE, opted_out_at=T0)
    assert chat_status_for(ChatStatus.active, opted) == ChatStatus.opted_out
    assert chat_status_for(ChatStatus.paused, opted) == ChatStatus.paused
    assert chat_status_for(ChatStatus.gone, opted) == ChatStatus.gone
    cleared = opted.merged(RecipientFacts(HANDLE, last_inbound_at=T0 + timedelta(minutes=1)))
    assert chat_status_for(ChatStatus.opted_out, cleared) == ChatStatus.active
    assert chat_status_for(ChatStatus.blocked, RecipientFacts(HANDLE)) == ChatStatus.active
    # Opted out on its own, with no opt-out on record for the recipient: kept.
    assert chat_status_for(ChatStatus.opted_out, RecipientFacts(HANDLE)) == ChatStatus.opted_out
