"""The sharing rule across DST transitions and calendar boundaries.

Expected instants are worked out by hand from the zone rules, not from zoneinfo, so a wrong
conversion in the rule cannot also make the expectation wrong.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.core.rule import (
    ChatFacts,
    LineFacts,
    Policy,
    is_due,
    next_share_at,
    share_day,
    window_bounds,
)
from scheduler.core.status import ChatStatus

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
PARIS = ZoneInfo("Europe/Paris")
LINE = LineFacts(card_active=True, paused=False, timezone=None)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def policy(zone: str, start: time, end: time, **changes: Any) -> Policy:
    return Policy(
        timezone=zone,
        window_start=start,
        window_end=end,
        min_interval=timedelta(0),
        stop_after_inactive_days=None,
        **changes,
    )


def chat(first_outbound_at: datetime, **changes: Any) -> ChatFacts:
    base = ChatFacts(
        service="iMessage",
        is_group=False,
        status=ChatStatus.active.value,
        recipient=None,
        first_outbound_at=first_outbound_at,
        last_outbound_at=first_outbound_at,
        last_inbound_at=None,
        last_shared_at=None,
        share_count=0,
    )
    return base._replace(**changes)


def shared(c: ChatFacts, when: datetime) -> ChatFacts:
    return c._replace(last_shared_at=when, share_count=c.share_count + 1)


# --- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST


def test_new_york_daytime_window_around_spring_forward() -> None:
    p = policy("America/New_York", time(9), time(20))
    assert window_bounds(date(2026, 3, 7), NEW_YORK, p) == (utc(2026, 3, 7, 14), utc(2026, 3, 8, 1))
    assert window_bounds(date(2026, 3, 8), NEW_YORK, p) == (utc(2026, 3, 8, 13), utc(2026, 3, 9, 0))


def test_new_york_daytime_window_around_fall_back() -> None:
    p = policy("America/New_York", time(9), time(20))
    assert window_bounds(date(2026, 10, 31), NEW_YORK, p) == (
        utc(2026, 10, 31, 13),
        utc(2026, 11, 1, 0),
    )
    assert window_bounds(date(2026, 11, 1), NEW_YORK, p) == (
        utc(2026, 11, 1, 14),
        utc(2026, 11, 2, 1),
    )


def test_start_in_the_spring_forward_gap_opens_when_the_clock_jumps() -> None:
    p = policy("America/New_York", time(2, 30), time(5))
    # 02:30 never happens on 2026-03-08: the window opens at 03:00 EDT (07:00 UTC).
    assert window_bounds(date(2026, 3, 8), NEW_YORK, p) == (utc(2026, 3, 8, 7), utc(2026, 3, 8, 9))
    # The day before, 02:30 EST exists as usual.
    assert window_bounds(date(2026, 3, 7), NEW_YORK, p) == (
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 7, 10),
    )
    c = chat(utc(2026, 3, 7, 12), last_shared_at=utc(2026, 3, 7, 8), share_count=1)
    assert not is_due(c, LINE, p, utc(2026, 3, 8, 6, 59, 59))
    assert next_share_at(c, LINE, p, utc(2026, 3, 8, 5)) == utc(2026, 3, 8, 7)
    assert is_due(c, LINE, p, utc(2026, 3, 8, 7))


def test_end_in_the_spring_forward_gap_closes_when_the_clock_jumps() -> None:
    p = policy("America/New_York", time(1), time(2, 30))
    # 01:00 EST (06:00 UTC) to the jump at 07:00 UTC: one real hour.
    assert window_bounds(date(2026, 3, 8), NEW_YORK, p) == (utc(2026, 3, 8, 6), utc(2026, 3, 8, 7))


def test_ambiguous_start_on_fall_back_uses_the_first_occurrence() -> None:
    p = policy("America/New_York", time(1, 30), time(3))
    # 01:30 EDT is 05:30 UTC; the second 01:30 (EST) would be 06:30 UTC.
    assert window_bounds(date(2026, 11, 1), NEW_YORK, p) == (
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 8),
    )
    c = chat(utc(2026, 10, 31, 12))
    assert is_due(c, LINE, p, utc(2026, 11, 1, 5, 30))
    after_first = shared(c, utc(2026, 11, 1, 5, 30))
    # The second pass through 01:30 must not count as a new day.
    assert not is_due(after_first, LINE, p, utc(2026, 11, 1, 6, 30))
    assert next_share_at(after_first, LINE, p, utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 2, 6, 30)


def test_crossing_window_over_the_spring_forward_night() -> None:
    p = policy("America/New_York", time(22), time(2))
    # Opens 22:00 EST on the 7th; 02:00 on the 8th does not exist, so it ends at the jump.
    assert window_bounds(date(2026, 3, 7), NEW_YORK, p) == (utc(2026, 3, 8, 3), utc(2026, 3, 8, 7))
    # The next night is all EDT.
    assert window_bounds(date(2026, 3, 8), NEW_YORK, p) == (utc(2026, 3, 9, 2), utc(2026, 3, 9, 6))
    c = chat(utc(2026, 3, 7, 12))
    first = next_share_at(c, LINE, p, utc(2026, 3, 7, 12))
    assert first == utc(2026, 3, 8, 3)
    assert share_day(utc(2026, 3, 8, 6, 59), NEW_YORK, p) == date(2026, 3, 7)
    late = shared(c, utc(2026, 3, 8, 6, 59))
    # 03:00 EDT is outside every window; the next one opens 22:00 EDT on the 8th.
    assert not is_due(late, LINE, p, utc(2026, 3, 8, 7))
    assert next_share_at(late, LINE, p, utc(2026, 3, 8, 7)) == utc(2026, 3, 9, 2)


def test_crossing_window_over_the_fall_back_night() -> None:
    p = policy("America/New_York", time(22), time(2))
    # Opens 22:00 EDT on Oct 31 (02:00 UTC); 02:00 on Nov 1 is after the repeat: 02:00 EST.
    assert window_bounds(date(2026, 10, 31), NEW_YORK, p) == (
        utc(2026, 11, 1, 2),
        utc(2026, 11, 1, 7),
    )
    c = chat(utc(2026, 10, 31, 12))
    shared_early = shared(c, utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    # 01:30 EST, an hour later and the same wall time: still the same window, not a new day.
    assert share_day(utc(2026, 11, 1, 6, 30), NEW_YORK, p) == date(2026, 10, 31)
    assert not is_due(shared_early, LINE, p, utc(2026, 11, 1, 6, 30))
    assert next_share_at(shared_early, LINE, p, utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 2, 3)


def test_crossing_window_ending_in_the_repeated_hour() -> None:
    p = policy("America/New_York", time(22), time(1, 30))
    # The window ends at the first 01:30 (EDT, 05:30 UTC); the repeated 01:00-01:30 EST hour
    # reads as "before the end" on the wall clock yet lies outside the window.
    assert window_bounds(date(2026, 10, 31), NEW_YORK, p)[1] == utc(2026, 11, 1, 5, 30)
    c = chat(utc(2026, 10, 31, 12))
    assert is_due(c, LINE, p, utc(2026, 11, 1, 5, 29))
    assert not is_due(c, LINE, p, utc(2026, 11, 1, 6, 10))
    assert next_share_at(c, LINE, p, utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 3)


def test_daily_shares_through_both_new_york_transitions_keep_local_time() -> None:
    p = policy("America/New_York", time(9), time(20))
    for start, end in [
        (date(2026, 3, 5), date(2026, 3, 12)),
        (date(2026, 10, 28), date(2026, 11, 4)),
    ]:
        now = datetime.combine(start, time(5), tzinfo=NEW_YORK).astimezone(UTC)
        c = chat(now)
        local: list[datetime] = []
        while True:
            due = next_share_at(c, LINE, p, now)
            assert due is not None
            if due.astimezone(NEW_YORK).date() > end:
                break
            local.append(due.astimezone(NEW_YORK))
            c = shared(c, due)
            now = due + timedelta(minutes=1)
        assert [t.date() for t in local] == [
            start + timedelta(days=i) for i in range((end - start).days + 1)
        ]
        assert all(t.time() == time(9) for t in local)
        # The UTC instant moves by an hour across the transition; the wall clock does not.
        assert len({t.utcoffset() for t in local}) == 2


# --- Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT ---


def test_london_daytime_window_shifts_by_an_hour() -> None:
    p = policy("Europe/London", time(9), time(17))
    assert window_bounds(date(2026, 3, 28), LONDON, p) == (
        utc(2026, 3, 28, 9),
        utc(2026, 3, 28, 17),
    )
    assert window_bounds(date(2026, 3, 29), LONDON, p) == (
        utc(2026, 3, 29, 8),
        utc(2026, 3, 29, 16),
    )
    assert window_bounds(date(2026, 10, 25), LONDON, p) == (
        utc(2026, 10, 25, 9),
        utc(2026, 10, 25, 17),
    )


def test_london_start_in_the_gap() -> None:
    p = policy("Europe/London", time(1, 30), time(3))
    # 01:30 does not exist on 2026-03-29; the clock jumps at 01:00 UTC to 02:00 BST.
    assert window_bounds(date(2026, 3, 29), LONDON, p) == (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))


def test_london_crossing_window_ending_in_the_repeated_hour() -> None:
    p = policy("Europe/London", time(23), time(1, 30))
    # Opens 23:00 BST on Oct 24 (22:00 UTC), ends at the first 01:30 (BST, 00:30 UTC).
    assert window_bounds(date(2026, 10, 24), LONDON, p) == (
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 0, 30),
    )
    # The following night is GMT.
    assert window_bounds(date(2026, 10, 25), LONDON, p) == (
        utc(2026, 10, 25, 23),
        utc(2026, 10, 26, 1, 30),
    )


# --- Australia/Lord_Howe: half-hour DST. +10:30 standard, +11:00 summer. ----------------------
# 2026-04-05 02:00 (+11) -> 01:30 (+10:30); 2026-10-04 02:00 (+10:30) -> 02:30 (+11).


def test_lord_howe_half_hour_gap() -> None:
    p = policy("Australia/Lord_Howe", time(2, 15), time(6))
    # 02:15 is skipped; the clock jumps at 15:30 UTC on Oct 3 to 02:30 +11.
    assert window_bounds(date(2026, 10, 4), LORD_HOWE, p) == (
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 19),
    )
    assert window_bounds(date(2026, 10, 3), LORD_HOWE, p) == (
        utc(2026, 10, 2, 15, 45),
        utc(2026, 10, 2, 19, 30),
    )


def test_lord_howe_half_hour_repeat() -> None:
    p = policy("Australia/Lord_Howe", time(1, 45), time(9))
    # 01:45 happens at +11 (14:45 UTC) and again at +10:30 (15:15 UTC); the first one counts.
    assert window_bounds(date(2026, 4, 5), LORD_HOWE, p) == (
        utc(2026, 4, 4, 14, 45),
        utc(2026, 4, 4, 22, 30),
    )
    c = chat(utc(2026, 4, 4, 0))
    assert next_share_at(c, LINE, p, utc(2026, 4, 4, 12)) == utc(2026, 4, 4, 14, 45)
    after = shared(c, utc(2026, 4, 4, 14, 45))
    assert not is_due(after, LINE, p, utc(2026, 4, 4, 15, 15))


def test_lord_howe_daytime_window_is_half_an_hour_shorter_on_the_gap_day() -> None:
    p = policy("Australia/Lord_Howe", time(0), time(12))
    opens, closes = window_bounds(date(2026, 10, 4), LORD_HOWE, p)
    assert closes - opens == timedelta(hours=11, minutes=30)
    opens, closes = window_bounds(date(2026, 4, 5), LORD_HOWE, p)
    assert closes - opens == timedelta(hours=12, minutes=30)


# --- Calendar boundaries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opening_day", "opens", "closes"),
    [
        # Europe/Paris is UTC+1 in winter: 22:00 -> 21:00 UTC, 02:00 -> 01:00 UTC.
        (date(2026, 12, 31), utc(2026, 12, 31, 21), utc(2027, 1, 1, 1)),
        (date(2026, 1, 31), utc(2026, 1, 31, 21), utc(2026, 2, 1, 1)),
        (date(2028, 2, 28), utc(2028, 2, 28, 21), utc(2028, 2, 29, 1)),
        (date(2028, 2, 29), utc(2028, 2, 29, 21), utc(2028, 3, 1, 1)),
        (date(2027, 2, 28), utc(2027, 2, 28, 21), utc(2027, 3, 1, 1)),
    ],
)
def test_crossing_window_over_month_and_year_ends(
    opening_day: date, opens: datetime, closes: datetime
) -> None:
    p = policy("Europe/Paris", time(22), time(2))
    assert window_bounds(opening_day, PARIS, p) == (opens, closes)
    just_before_end = closes - timedelta(minutes=1)
    assert share_day(just_before_end, PARIS, p) == opening_day
    c = chat(opens - timedelta(days=1))
    assert next_share_at(c, LINE, p, opens - timedelta(hours=3)) == opens
    assert is_due(shared(c, opens - timedelta(days=1)), LINE, p, just_before_end)
    assert not is_due(shared(c, opens), LINE, p, just_before_end)


def test_new_years_night_counts_for_the_day_it_opened() -> None:
    # Thursday nights only: New Year's Eve 2026 is a Thursday, New Year's Day a Friday.
    p = policy("Europe/Paris", time(22), time(2), days=frozenset({3}))
    c = chat(utc(2026, 12, 20, 12))
    new_year_00_30 = utc(2026, 12, 31, 23, 30)
    assert is_due(c, LINE, p, new_year_00_30)
    after = shared(c, new_year_00_30)
    assert next_share_at(after, LINE, p, new_year_00_30) == utc(2027, 1, 7, 21)


def test_crossing_window_over_a_year_end_in_new_york() -> None:
    p = policy("America/New_York", time(22), time(2))
    # EST all winter: 22:00 -> 03:00 UTC next day, 02:00 -> 07:00 UTC.
    assert window_bounds(date(2026, 12, 31), NEW_YORK, p) == (
        utc(2027, 1, 1, 3),
        utc(2027, 1, 1, 7),
    )
    c = chat(utc(2026, 12, 30, 12), last_shared_at=utc(2026, 12, 31, 6), share_count=1)
    # The share at 01:00 EST on Dec 31 counted for Dec 30; Dec 31's window is still free.
    assert next_share_at(c, LINE, p, utc(2026, 12, 31, 12)) == utc(2027, 1, 1, 3)
