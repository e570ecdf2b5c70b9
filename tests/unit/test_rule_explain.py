"""``explain``: the rule's verdict with its reason, always in agreement with ``is_due``."""

from __future__ import annotations

import dataclasses
from datetime import time, timedelta

from hypothesis import event, given
from hypothesis import strategies as st

from scheduler.core.rule import (
    WAIT_REASONS,
    LineFacts,
    explain,
    ineligible_reason,
    is_due,
    next_share_at,
    share_day,
    zone_for,
)
from tests.unit.test_rule import LINE, MONDAY, at, chat, policy
from tests.unit.test_rule_properties import SETTINGS, Setup, chats_at, setups

INELIGIBLE = {
    "card_inactive",
    "line_paused",
    "chat_paused",
    "opted_out",
    "gone",
    "status_unknown",
    "service_unknown",
    "not_imessage",
    "group",
    "no_outbound",
    "max_shares",
    "inactive",
}


def test_each_reason_by_example() -> None:
    pol = policy(min_interval=timedelta(hours=12))
    assert explain(chat(), LINE, pol, at(MONDAY, 10)).reason == "due"
    assert explain(chat(), LINE, pol, at(MONDAY, 10)).due
    early = explain(chat(), LINE, pol, at(MONDAY, 8, 30))
    assert (early.due, early.reason, early.next_at) == (False, "outside_window", at(MONDAY, 9))
    yesterday = chat(
        first_outbound_at=at(MONDAY, 8) - timedelta(days=2),
        last_shared_at=at(MONDAY, 19) - timedelta(days=1),
        share_count=1,
    )
    verdict = explain(yesterday, LINE, policy(min_interval=timedelta(hours=16)), at(MONDAY, 10))
    assert (verdict.reason, verdict.next_at) == ("min_interval", at(MONDAY, 11))
    shared = chat(last_shared_at=at(MONDAY, 9, 5), share_count=1)
    today = explain(shared, LINE, pol, at(MONDAY, 12))
    assert (today.reason, today.next_at) == ("shared_today", at(MONDAY + timedelta(days=1), 9))
    backoff = chat(not_before=at(MONDAY, 11))
    assert explain(backoff, LINE, pol, at(MONDAY, 10)).reason == "retry_backoff"
    delay = policy(first_share_delay=timedelta(hours=3))
    assert explain(chat(), LINE, delay, at(MONDAY, 10)).reason == "first_share_delay"
    weekdays = policy(days=frozenset(range(1, 7)))  # no Mondays
    assert explain(chat(), LINE, weekdays, at(MONDAY, 10)).reason == "day_not_allowed"
    paused = LineFacts(card_active=True, paused=True, timezone=None)
    assert explain(chat(), paused, pol, at(MONDAY, 10)) == explain(
        chat(), paused, pol, at(MONDAY, 10)
    )
    assert explain(chat(), paused, pol, at(MONDAY, 10)).reason == "line_paused"
    night = policy(window_start=time(22, 0), window_end=time(2, 0))
    assert explain(chat(), LINE, night, at(MONDAY, 23)).reason == "due"


@SETTINGS
@given(setup=setups(), data=st.data())
def test_explain_agrees_with_the_rule(setup: Setup, data: st.DataObject) -> None:
    line_state = data.draw(st.sampled_from(["ok"] * 8 + ["card_inactive", "paused"]))
    line = dataclasses.replace(
        setup.line, card_active=line_state != "card_inactive", paused=line_state == "paused"
    )
    pol = setup.policy
    facts, now = data.draw(chats_at(setup.recipient, setup.zone))
    verdict = explain(facts, line, pol, now)
    event(verdict.reason)
    assert verdict.due == is_due(facts, line, pol, now)
    never = ineligible_reason(facts, line, pol, now)
    if never is not None:
        assert (verdict.reason, verdict.next_at) == (never, None)
        return
    assert verdict.next_at == next_share_at(facts, line, pol, now)
    if verdict.due:
        assert verdict.reason == "due"
        return
    assert verdict.reason in WAIT_REASONS
    assert verdict.reason not in INELIGIBLE
    last = facts.last_shared_at
    if verdict.reason == "min_interval":
        assert last is not None and verdict.next_at == last + pol.min_interval
    if verdict.reason == "retry_backoff":
        assert verdict.next_at == facts.not_before
    if verdict.reason == "shared_today":
        zone = zone_for(facts, line, pol)
        assert last is not None and share_day(last, zone, pol) == share_day(now, zone, pol)
