"""Parsing hostile payloads, the opt-out merge in any order, and the ingestion settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.config import parse_schedule
from scheduler.core.event import ChatActivity
from scheduler.core.merge import merge_activity
from scheduler.core.status import ChatStatus
from scheduler.errors import ConfigError
from scheduler.http.webhooks import type_label
from scheduler.ingest.events import EventError, parse_event
from scheduler.ingest.signing import SignatureVerdict, verify
from tests.factories import EVENT_LINE as LINE
from tests.factories import EVENT_TIME as T0
from tests.factories import message_event


def _with(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target = payload
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    target[last] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("data.sent_at", "0001-01-01T00:00:00+05:00", "data.sent_at"),
        ("data.sent_at", "9999-12-31T23:59:59-05:00", "data.sent_at"),
        ("data.sent_at", "1999-12-31T23:59:59Z", "data.sent_at"),
        ("data.chat.id", "chat\x00one", "data.chat.id"),
        ("data.chat.id", "\ud800", "data.chat.id"),
        ("data.chat.owner_handle.handle", "not-a-number", "data.chat.owner_handle.handle"),
        ("data.chat.owner_handle.handle", "+14155550100\n", "data.chat.owner_handle.handle"),
        ("data.chat.health_status", {"status": "OPTED_OUT", "updated_at": "soon"}, "updated_at"),
        ("event_id", "ev\x00", "event_id"),
    ],
)
def test_values_the_ledger_cannot_hold_are_rejected_with_the_field(
    path: str, value: Any, field: str
) -> None:
    payload = _with(message_event("message.sent"), path, value)
    with pytest.raises(EventError, match=field.replace(".", r"\.")):
        parse_event(payload)


def test_an_inbound_sender_with_a_comma_is_rejected() -> None:
    payload = message_event("message.received", direction="inbound")
    payload["data"]["sender_handle"]["handle"] = "a@example.com,b@example.com"
    with pytest.raises(EventError, match="comma"):
        parse_event(payload)


def test_opt_out_time_comes_from_health_or_from_the_stop_message() -> None:
    stop = message_event("message.received", direction="inbound", health="OPTED_OUT")
    act = parse_event(stop).activity
    assert act is not None
    assert (act.opted_out, act.opted_out_at) == (True, T0)
    stated = message_event("message.sent", health="OPTED_OUT")
    stated["data"]["chat"]["health_status"]["updated_at"] = "2026-05-01T08:00:00Z"
    act = parse_event(stated).activity
    assert act is not None
    assert act.opted_out_at == datetime(2026, 5, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("stamp", ["\u00b2", "1\u00b9", "\u0661\u0662", "-1", "1e9", " 1"])
def test_timestamps_that_are_not_ascii_digits_are_malformed(stamp: str) -> None:
    verdict = verify(
        secrets=["s"],
        timestamp=stamp,
        signature="0" * 64,
        body=b"{}",
        now_unix=0,
        tolerance_seconds=300,
    )
    assert verdict == SignatureVerdict.malformed_timestamp


def test_metric_labels_are_bounded() -> None:
    assert type_label("message.sent") == "message.sent"
    assert type_label("x" * 64) == "other"
    assert type_label(None) == "other"


# -- opt-outs in any order ---------------------------------------------------------------------

inbound = st.tuples(st.integers(0, 20), st.booleans(), st.booleans())


def _act(t: int, stop: bool, from_chat: bool) -> ChatActivity:
    at = T0 + timedelta(minutes=t)
    if stop and from_chat:
        # A chat payload: the opt-out and its time, no message.
        return ChatActivity(chat_id="c", opted_out=True, opted_out_at=at)
    return ChatActivity(
        chat_id="c", inbound_at=at, opted_out=stop, opted_out_at=at if stop else None
    )


@given(st.lists(inbound, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_the_latest_word_of_the_recipient_decides_whatever_the_order(
    acts: list[tuple[int, bool, bool]], rnd: Any
) -> None:
    start = merge_activity(None, ChatActivity(chat_id="c", line=LINE, outbound_at=T0))
    results = []
    for _ in range(3):
        chat = start
        for t, stop, from_chat in rnd.sample(acts, len(acts)):
            chat = merge_activity(chat, _act(t, stop, from_chat))
        results.append((chat.status, chat.last_inbound_at))
    assert results[0] == results[1] == results[2]
    latest = max(t for t, _, _ in acts)
    expected = (
        ChatStatus.opted_out
        if any(stop for t, stop, _ in acts if t == latest)
        else ChatStatus.active
    )
    assert results[0] == (expected, T0 + timedelta(minutes=latest))


def test_paused_and_gone_chats_keep_their_status() -> None:
    for status in (ChatStatus.paused, ChatStatus.gone):
        chat = merge_activity(None, ChatActivity(chat_id="c", outbound_at=T0))
        chat = chat._replace(status=status)
        stop = ChatActivity(chat_id="c", inbound_at=T0, opted_out=True, opted_out_at=T0)
        chat = merge_activity(chat, stop)
        hello = ChatActivity(chat_id="c", inbound_at=T0 + timedelta(hours=1))
        assert merge_activity(chat, hello).status == status


# -- settings ----------------------------------------------------------------------------------


def test_backfill_settings_have_defaults_and_bounds() -> None:
    schedule = parse_schedule({}, "x.yaml")
    assert schedule.backfill.enabled is True
    assert schedule.backfill.interval == timedelta(hours=6)
    assert schedule.backfill.page_size == 100
    with pytest.raises(ConfigError) as info:
        parse_schedule({"backfill": {"interval": "10s", "page_size": 101, "bogus": 1}}, "x.yaml")
    text = str(info.value)
    assert "backfill.interval: must be at least 1m" in text
    assert "backfill.page_size" in text
    assert "backfill.bogus: unknown key" in text


def test_event_ids_must_outlive_the_tolerance_and_linq_retries() -> None:
    with pytest.raises(ConfigError, match="event_retention must be longer"):
        parse_schedule({"webhooks": {"event_retention": "30m"}}, "x.yaml")
    with pytest.raises(ConfigError, match="event_retention must be longer"):
        parse_schedule({"webhooks": {"tolerance": "2d", "event_retention": "1d"}}, "x.yaml")
    assert parse_schedule({"webhooks": {"tolerance": "10m"}}, "x.yaml").webhooks.tolerance == (
        timedelta(minutes=10)
    )
