"""Examples of the sharing rule: windows, days, intervals, caps, inactivity, zones."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from scheduler import clock
from scheduler.config import SharingConfig, Weekday, WindowConfig
from scheduler.core.rule import (
    ChatFacts,
    LineFacts,
    Policy,
    ineligible_reason,
    is_due,
    next_share_at,
    share_day,
    window_bounds,
    zone_for,
)
from scheduler.core.status import ChatStatus

UTC_ZONE = ZoneInfo("UTC")
# Monday 2026-05-04; a UTC policy keeps wall times and instants equal in most examples.
MONDAY = date(2026, 5, 4)
LINE = LineFacts(card_active=True, paused=False, timezone=None)
POLICY = Policy(timezone="UTC", stop_after_inactive_days=None)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def chat(**changes: Any) -> ChatFacts:
    base = ChatFacts(
        service="iMessage",
        is_group=False,
        status=ChatStatus.active.value,
        recipient="+14155550100",
        first_outbound_at=at(MONDAY, 8),
        last_outbound_at=at(MONDAY, 8),
        last_inbound_at=None,
        last_shared_at=None,
        share_count=0,
        not_before=None,
    )
    return base._replace(**changes)


def policy(**changes: Any) -> Policy:
    return dataclasses.replace(POLICY, **changes)


# --- Policy -------------------------------------------------------------------------------


def test_policy_from_config_maps_every_knob() -> None:
    cfg = SharingConfig(
        timezone="recipient",
        fallback_timezone="Europe/Paris",
        window=WindowConfig(start=time(22, 0), end=time(2, 0), days=[Weekday.fri, Weekday.mon]),
        min_interval=timedelta(hours=20),
        first_share_delay=timedelta(minutes=15),
        stop_after_inactive_days=14,
        max_shares=5,
        include_groups=True,
    )
    got = Policy.from_config(cfg)
    assert got == Policy(
        timezone="recipient",
        fallback_timezone="Europe/Paris",
        window_start=time(22, 0),
        window_end=time(2, 0),
        days=frozenset({0, 4}),
        min_interval=timedelta(hours=20),
        first_share_delay=timedelta(minutes=15),
        stop_after_inactive_days=14,
        max_shares=5,
        include_groups=True,
    )
    assert got.crosses_midnight
    assert got.fixed_zone is None
    assert got.fallback_zone == ZoneInfo("Europe/Paris")


def test_policy_defaults_match_config_defaults() -> None:
    assert Policy.from_config(SharingConfig()) == Policy()


def test_policy_resolves_fixed_zone_once() -> None:
    p = Policy(timezone="Asia/Tokyo")
    assert p.fixed_zone == ZoneInfo("Asia/Tokyo")
    assert not p.crosses_midnight


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"fallback_timezone": "Nowhere"}, "unknown fallback"),
        ({"window_start": time(9), "window_end": time(9)}, "empty"),
        ({"days": frozenset()}, "days"),
        ({"days": frozenset({7})}, "days"),
        ({"min_interval": timedelta(hours=-1)}, "negative"),
        ({"stop_after_inactive_days": 0}, "stop_after_inactive_days"),
        ({"max_shares": 0}, "max_shares"),
        ({"window_start": time(9, tzinfo=UTC)}, "wall time"),
    ],
)
def test_policy_rejects_bad_knobs(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**changes)


# --- The window ---------------------------------------------------------------------------


def test_due_inside_the_window() -> None:
    assert is_due(chat(), LINE, POLICY, at(MONDAY, 12))
    assert next_share_at(chat(), LINE, POLICY, at(MONDAY, 12)) == at(MONDAY, 12)


def test_before_the_window_waits_for_it_to_open() -> None:
    c = chat(first_outbound_at=at(MONDAY, 5), last_outbound_at=at(MONDAY, 5))
    now = at(MONDAY, 6)
    assert not is_due(c, LINE, POLICY, now)
    assert next_share_at(c, LINE, POLICY, now) == at(MONDAY, 9)


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    c = chat(first_outbound_at=at(MONDAY, 5))
    assert is_due(c, LINE, POLICY, at(MONDAY, 9))
    assert is_due(c, LINE, POLICY, at(MONDAY, 20) - timedelta(microseconds=1))
    assert not is_due(c, LINE, POLICY, at(MONDAY, 20))
    assert next_share_at(c, LINE, POLICY, at(MONDAY, 20)) == at(MONDAY + timedelta(days=1), 9)


def test_window_bounds_follow_the_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    # Winter (UTC+1) and summer (UTC+2) put the same wall-clock window at different instants.
    assert window_bounds(date(2026, 1, 15), paris, POLICY) == (
        datetime(2026, 1, 15, 8, tzinfo=UTC),
        datetime(2026, 1, 15, 19, tzinfo=UTC),
    )
    assert window_bounds(date(2026, 7, 15), paris, POLICY) == (
        datetime(2026, 7, 15, 7, tzinfo=UTC),
        datetime(2026, 7, 15, 18, tzinfo=UTC),
    )


def test_window_crossing_midnight_ends_the_next_day() -> None:
    night = policy(window_start=time(22), window_end=time(2))
    assert window_bounds(MONDAY, UTC_ZONE, night) == (
        at(MONDAY, 22),
        at(MONDAY + timedelta(days=1), 2),
    )
    c = chat(first_outbound_at=at(MONDAY, 3))
    assert next_share_at(c, LINE, night, at(MONDAY, 12)) == at(MONDAY, 22)
    assert is_due(c, LINE, night, at(MONDAY + timedelta(days=1), 1, 59))
    assert not is_due(c, LINE, night, at(MONDAY + timedelta(days=1), 2))


def test_window_ending_at_midnight() -> None:
    evening = policy(window_start=time(20), window_end=time(0))
    assert evening.crosses_midnight
    assert window_bounds(MONDAY, UTC_ZONE, evening) == (
        at(MONDAY, 20),
        at(MONDAY + timedelta(days=1), 0),
    )
    assert share_day(at(MONDAY, 23, 59), UTC_ZONE, evening) == MONDAY


def test_share_day_is_the_local_date() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 20:00 UTC on Monday is already 05:00 on Tuesday in Tokyo.
    assert share_day(at(MONDAY, 20), tokyo, POLICY) == MONDAY + timedelta(days=1)
    assert share_day(at(MONDAY, 14), tokyo, POLICY) == MONDAY


def test_share_day_of_a_crossing_window_is_its_opening_day() -> None:
    night = policy(window_start=time(22), window_end=time(2))
    tuesday = MONDAY + timedelta(days=1)
    assert share_day(at(tuesday, 1, 30), UTC_ZONE, night) == MONDAY
    assert share_day(at(tuesday, 2), UTC_ZONE, night) == tuesday
    assert share_day(at(MONDAY, 23), UTC_ZONE, night) == MONDAY


# --- Days ---------------------------------------------------------------------------------


def test_days_filter_skips_to_the_next_allowed_day() -> None:
    weekends = policy(days=frozenset({5, 6}))
    assert not is_due(chat(), LINE, weekends, at(MONDAY, 12))
    assert next_share_at(chat(), LINE, weekends, at(MONDAY, 12)) == at(date(2026, 5, 9), 9)


def test_single_allowed_day_already_used_waits_a_week() -> None:
    mondays = policy(days=frozenset({0}), min_interval=timedelta(0))
    c = chat(last_shared_at=at(MONDAY, 10), share_count=1)
    assert next_share_at(c, LINE, mondays, at(MONDAY, 11)) == at(date(2026, 5, 11), 9)


def test_days_filter_applies_to_the_day_a_crossing_window_opens() -> None:
    friday_nights = policy(window_start=time(22), window_end=time(2), days=frozenset({4}))
    c = chat()
    friday, saturday = date(2026, 5, 8), date(2026, 5, 9)
    # Saturday 01:00 belongs to Friday's window; Friday 01:00 belongs to Thursday's.
    assert is_due(c, LINE, friday_nights, at(saturday, 1))
    assert not is_due(c, LINE, friday_nights, at(friday, 1))
    assert next_share_at(c, LINE, friday_nights, at(friday, 1)) == at(friday, 22)


# --- Once a day, intervals, delays --------------------------------------------------------


def test_shared_today_waits_for_tomorrow() -> None:
    c = chat(last_shared_at=at(MONDAY, 9, 30), share_count=1)
    no_interval = policy(min_interval=timedelta(0))
    assert not is_due(c, LINE, no_interval, at(MONDAY, 15))
    assert next_share_at(c, LINE, no_interval, at(MONDAY, 15)) == at(MONDAY + timedelta(days=1), 9)


def test_shared_yesterday_is_due_today() -> None:
    c = chat(last_shared_at=at(MONDAY - timedelta(days=1), 9), share_count=1)
    assert is_due(c, LINE, POLICY, at(MONDAY, 9))


def test_min_interval_delays_inside_the_window() -> None:
    c = chat(last_shared_at=at(MONDAY - timedelta(days=1), 19), share_count=1)
    sixteen_hours = policy(min_interval=timedelta(hours=16))
    assert not is_due(c, LINE, sixteen_hours, at(MONDAY, 10))
    assert next_share_at(c, LINE, sixteen_hours, at(MONDAY, 9)) == at(MONDAY, 11)


def test_min_interval_past_the_window_moves_to_the_next_day() -> None:
    c = chat(last_shared_at=at(MONDAY - timedelta(days=1), 19), share_count=1)
    long_gap = policy(min_interval=timedelta(hours=26))
    assert next_share_at(c, LINE, long_gap, at(MONDAY, 9)) == at(MONDAY + timedelta(days=1), 9)


def test_first_share_delay_counts_from_the_first_outbound_message() -> None:
    delayed = policy(first_share_delay=timedelta(hours=2))
    c = chat(first_outbound_at=at(MONDAY, 10), last_outbound_at=at(MONDAY, 10))
    assert not is_due(c, LINE, delayed, at(MONDAY, 11))
    assert next_share_at(c, LINE, delayed, at(MONDAY, 10)) == at(MONDAY, 12)
    late = chat(first_outbound_at=at(MONDAY, 19), last_outbound_at=at(MONDAY, 19))
    assert next_share_at(late, LINE, delayed, at(MONDAY, 19)) == at(MONDAY + timedelta(days=1), 9)


def test_not_before_defers_a_retry() -> None:
    c = chat(not_before=at(MONDAY, 13, 30))
    assert not is_due(c, LINE, POLICY, at(MONDAY, 13))
    assert next_share_at(c, LINE, POLICY, at(MONDAY, 13)) == at(MONDAY, 13, 30)


def test_not_before_in_the_past_is_ignored() -> None:
    c = chat(not_before=at(MONDAY, 10))
    assert is_due(c, LINE, POLICY, at(MONDAY, 12))


# --- Caps and inactivity ------------------------------------------------------------------


def test_max_shares_stops_sharing() -> None:
    capped = policy(max_shares=3)
    yesterday = at(MONDAY - timedelta(days=1), 10)
    below = chat(last_shared_at=yesterday, share_count=2)
    reached = chat(last_shared_at=yesterday, share_count=3)
    assert is_due(below, LINE, capped, at(MONDAY, 12))
    assert ineligible_reason(reached, LINE, capped, at(MONDAY, 12)) == "max_shares"
    assert next_share_at(reached, LINE, capped, at(MONDAY, 12)) is None


def test_inactive_chat_is_never_due() -> None:
    month = policy(stop_after_inactive_days=30)
    c = chat(first_outbound_at=at(MONDAY, 10), last_outbound_at=at(MONDAY, 10))
    deadline = at(MONDAY, 10) + timedelta(days=30)
    assert ineligible_reason(c, LINE, month, deadline - timedelta(seconds=1)) is None
    assert is_due(c, LINE, month, deadline - timedelta(seconds=1))
    assert ineligible_reason(c, LINE, month, deadline) == "inactive"
    assert next_share_at(c, LINE, month, deadline) is None


def test_inactivity_deadline_before_the_next_window_means_never() -> None:
    week = policy(stop_after_inactive_days=7)
    c = chat(first_outbound_at=at(MONDAY, 7), last_outbound_at=at(MONDAY, 7))
    # Seven days later the chat dies at 07:00, before the 09:00 window opens.
    now = at(MONDAY + timedelta(days=7), 6)
    assert ineligible_reason(c, LINE, week, now) is None
    assert next_share_at(c, LINE, week, now) is None


def test_inbound_activity_keeps_a_chat_alive() -> None:
    week = policy(stop_after_inactive_days=7)
    c = chat(
        first_outbound_at=at(MONDAY, 7),
        last_outbound_at=at(MONDAY, 7),
        last_inbound_at=at(MONDAY + timedelta(days=6), 8),
    )
    now = at(MONDAY + timedelta(days=8), 12)
    assert is_due(c, LINE, week, now)


def test_deadline_inside_the_window_cuts_it_short() -> None:
    week = policy(stop_after_inactive_days=7)
    c = chat(first_outbound_at=at(MONDAY, 12), last_outbound_at=at(MONDAY, 12))
    later = MONDAY + timedelta(days=7)
    assert next_share_at(c, LINE, week, at(later, 8)) == at(later, 9)
    assert is_due(c, LINE, week, at(later, 11, 59))
    assert not is_due(c, LINE, week, at(later, 12))


# --- Eligibility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chat_changes", "line", "reason"),
    [
        ({}, LineFacts(card_active=False, paused=False, timezone=None), "card_inactive"),
        ({}, LineFacts(card_active=True, paused=True, timezone=None), "line_paused"),
        ({"status": ChatStatus.paused.value}, LINE, "chat_paused"),
        ({"status": ChatStatus.opted_out.value}, LINE, "opted_out"),
        ({"status": ChatStatus.gone.value}, LINE, "gone"),
        ({"status": "archived"}, LINE, "status_unknown"),
        ({"service": "SMS"}, LINE, "not_imessage"),
        ({"service": "RCS"}, LINE, "not_imessage"),
        ({"service": None}, LINE, "service_unknown"),
        ({"is_group": True}, LINE, "group"),
        ({"first_outbound_at": None, "last_outbound_at": None}, LINE, "no_outbound"),
    ],
)
def test_each_ineligible_reason(chat_changes: dict[str, Any], line: LineFacts, reason: str) -> None:
    c = chat(**chat_changes)
    now = at(MONDAY, 12)
    assert ineligible_reason(c, line, POLICY, now) == reason
    assert next_share_at(c, line, POLICY, now) is None
    assert not is_due(c, line, POLICY, now)


def test_card_state_wins_over_other_reasons() -> None:
    c = chat(status=ChatStatus.gone.value, service="SMS")
    dead_card = LineFacts(card_active=False, paused=True, timezone=None)
    assert ineligible_reason(c, dead_card, POLICY, at(MONDAY, 12)) == "card_inactive"


@pytest.mark.parametrize("service", ["iMessage", "imessage", "IMESSAGE"])
def test_service_check_ignores_case(service: str) -> None:
    assert ineligible_reason(chat(service=service), LINE, POLICY, at(MONDAY, 12)) is None


def test_groups_follow_config() -> None:
    group = chat(is_group=True)
    assert is_due(group, LINE, policy(include_groups=True), at(MONDAY, 12))
    assert not is_due(group, LINE, policy(include_groups=False), at(MONDAY, 12))


def test_an_eligible_chat_has_no_reason() -> None:
    assert ineligible_reason(chat(), LINE, POLICY, at(MONDAY, 3)) is None


# --- Zones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "zone"),
    [
        ("+12127365000", "America/New_York"),
        ("+13105550123", "America/Los_Angeles"),
        ("+33612345678", "Europe/Paris"),
        ("+81312345678", "Asia/Tokyo"),
        ("+819012345678", "Asia/Tokyo"),
    ],
)
def test_recipient_zone_comes_from_the_number(recipient: str, zone: str) -> None:
    by_recipient = policy(timezone="recipient", fallback_timezone="Europe/Berlin")
    assert zone_for(chat(recipient=recipient), LINE, by_recipient) == ZoneInfo(zone)


@pytest.mark.parametrize(
    "recipient",
    [
        "someone@example.com",  # an Apple ID email has no zone
        "+15550000000",  # not a valid number: Etc/Unknown
        "+447700900123",  # reserved for drama: Etc/Unknown
        "12127365000",  # no + and no region: cannot be parsed
        "+18005550123",  # US toll-free: spans every US zone
        "+61412345678",  # Australian mobile: spans the continent
        "+",  # not a number at all
        "",
        None,
    ],
)
def test_recipient_without_a_zone_uses_the_fallback(recipient: str | None) -> None:
    by_recipient = policy(timezone="recipient", fallback_timezone="Europe/Berlin")
    assert zone_for(chat(recipient=recipient), LINE, by_recipient) == ZoneInfo("Europe/Berlin")


def test_recipient_zone_moves_the_window() -> None:
    by_recipient = policy(timezone="recipient")
    tokyo = chat(recipient="+81312345678", first_outbound_at=at(MONDAY, 0))
    # 09:00 in Tokyo is 00:00 UTC; 20:00 in Tokyo is 11:00 UTC.
    assert is_due(tokyo, LINE, by_recipient, at(MONDAY, 0))
    assert not is_due(tokyo, LINE, by_recipient, at(MONDAY, 11))
    assert next_share_at(tokyo, LINE, by_recipient, at(MONDAY, 11)) == at(
        MONDAY + timedelta(days=1), 0
    )


def test_line_zone() -> None:
    by_line = policy(timezone="line", fallback_timezone="Asia/Tokyo")
    chicago = LineFacts(card_active=True, paused=False, timezone="America/Chicago")
    assert zone_for(chat(), chicago, by_line) == ZoneInfo("America/Chicago")
    # May: Chicago is UTC-5, so its 09:00 opening is 14:00 UTC.
    assert next_share_at(chat(), chicago, by_line, at(MONDAY, 10)) == at(MONDAY, 14)


@pytest.mark.parametrize("zone", [None, "", "Not/AZone"])
def test_line_without_a_usable_zone_uses_the_fallback(zone: str | None) -> None:
    by_line = policy(timezone="line", fallback_timezone="Asia/Tokyo")
    line = LineFacts(card_active=True, paused=False, timezone=zone)
    assert zone_for(chat(), line, by_line) == ZoneInfo("Asia/Tokyo")


def test_fixed_zone_ignores_line_and_recipient() -> None:
    fixed = policy(timezone="Europe/Paris")
    line = LineFacts(card_active=True, paused=False, timezone="America/Chicago")
    assert zone_for(chat(recipient="+81312345678"), line, fixed) == ZoneInfo("Europe/Paris")


# --- With the clock seam ------------------------------------------------------------------


def test_frozen_clock_drives_a_day_of_sharing() -> None:
    c = chat(first_outbound_at=at(MONDAY, 7), last_outbound_at=at(MONDAY, 7))
    with freeze_time("2026-05-04 08:00:00") as frozen:
        assert not is_due(c, LINE, POLICY, clock.now())
        due = next_share_at(c, LINE, POLICY, clock.now())
        assert due == at(MONDAY, 9)
        frozen.move_to(due)
        now = clock.now()
        assert is_due(c, LINE, POLICY, now)
        c = c._replace(last_shared_at=now, share_count=1)
        frozen.tick(timedelta(hours=3))
        assert not is_due(c, LINE, POLICY, clock.now())
        assert next_share_at(c, LINE, POLICY, clock.now()) == at(MONDAY + timedelta(days=1), 9)
        frozen.move_to("2026-05-05 09:00:00")
        assert is_due(c, LINE, POLICY, clock.now())


def test_frozen_clock_reaches_the_inactivity_deadline() -> None:
    week = policy(stop_after_inactive_days=7)
    c = chat(first_outbound_at=at(MONDAY, 10), last_outbound_at=at(MONDAY, 10))
    with freeze_time("2026-05-10 12:00:00") as frozen:
        assert is_due(c, LINE, week, clock.now())
        frozen.tick(timedelta(days=1))
        assert ineligible_reason(c, LINE, week, clock.now()) == "inactive"
