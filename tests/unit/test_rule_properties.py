"""Properties of the sharing rule over random policies, zones and histories."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Paris",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # transitions at local midnight
    "America/Havana",  # transitions at local midnight
    "Asia/Kolkata",
    "Asia/Tokyo",
    "America/St_Johns",
]
# Numbers whose zone phonenumbers knows, plus handles that fall back.
RECIPIENTS = [
    "+12127365000",
    "+13105550123",
    "+33612345678",
    "+81312345678",
    "+442079460000",
    "someone@example.com",
    "+15550000000",
]
# Month, year and leap-day ends, where a crossing-midnight window spans two calendar units.
CALENDAR_EDGES = [date(2026, 1, 31), date(2026, 12, 31), date(2027, 2, 28), date(2028, 2, 28)]
FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2028, 12, 31)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def jumps(zone: ZoneInfo) -> tuple[datetime, ...]:
    """The instants (to the second) at which the zone's UTC offset changes, 2025-2028."""
    found: list[datetime] = []
    day = datetime.combine(FIRST_DAY, time(0), tzinfo=UTC)
    offset = day.astimezone(zone).utcoffset()
    while day.date() <= LAST_DAY:
        following = day + timedelta(days=1)
        following_offset = following.astimezone(zone).utcoffset()
        if following_offset != offset:
            low, high = day, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            found.append(high)
        day, offset = following, following_offset
    return tuple(found)


@dataclass(frozen=True)
class Setup:
    policy: Policy
    line: LineFacts
    recipient: str
    zone: ZoneInfo  # the zone the policy resolves to for this chat


wall_times = st.builds(
    time,
    hour=st.integers(0, 23),
    minute=st.one_of(st.sampled_from([0, 15, 30, 45]), st.integers(0, 59)),
)


@st.composite
def wall_times_near_jumps(draw: st.DrawFn, zone: ZoneInfo) -> time:
    """Wall times around the hour a DST change happens in the zone (any time if it has none)."""
    if not jumps(zone):
        return draw(wall_times)
    jump = draw(st.sampled_from(jumps(zone)))
    local = (jump - timedelta(minutes=1)).astimezone(zone)
    shifted = local + timedelta(minutes=draw(st.integers(-90, 150)))
    return shifted.time().replace(second=0, microsecond=0)


@st.composite
def instants(draw: st.DrawFn, zone: ZoneInfo) -> datetime:
    """Instants near the zone's DST changes, near calendar edges, or anywhere in 2025-2028."""
    kind = draw(st.sampled_from(["jump", "jump", "edge", "anywhere"]))
    if kind == "jump" and jumps(zone):
        jump = draw(st.sampled_from(jumps(zone)))
        return jump + timedelta(seconds=draw(st.integers(-5 * 86_400, 86_400)))
    if kind == "edge":
        day = draw(st.sampled_from(CALENDAR_EDGES)) - timedelta(days=draw(st.integers(0, 4)))
    else:
        day = FIRST_DAY + timedelta(days=draw(st.integers(0, (LAST_DAY - FIRST_DAY).days)))
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    return midnight + timedelta(seconds=draw(st.integers(0, 86_400 - 1)))


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    mode = draw(st.sampled_from(["fixed", "line", "recipient"]))
    zone_name = draw(st.sampled_from(ZONES))
    fallback = draw(st.sampled_from(ZONES))
    recipient = draw(st.sampled_from(RECIPIENTS))
    line = LineFacts(card_active=True, paused=False, timezone=zone_name)
    # Resolve the zone first so the window can be drawn around that zone's DST changes.
    probe = Policy(timezone=zone_name if mode == "fixed" else mode, fallback_timezone=fallback)
    some_day = datetime(2026, 1, 1, tzinfo=UTC)
    zone = zone_for(new_chat(some_day, recipient), line, probe)
    times = st.one_of(wall_times, wall_times_near_jumps(zone))
    start = draw(times)
    end = draw(times.filter(lambda t: t != start))
    policy = dataclasses.replace(
        probe,
        window_start=start,
        window_end=end,
        days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        min_interval=timedelta(minutes=draw(st.integers(0, 36 * 60))),
        first_share_delay=timedelta(
            minutes=draw(st.one_of(st.just(0), st.integers(0, 6 * 60), st.integers(0, 3 * 24 * 60)))
        ),
        stop_after_inactive_days=draw(st.one_of(st.none(), st.integers(1, 20))),
        max_shares=draw(st.one_of(st.none(), st.integers(1, 15))),
        include_groups=True,
    )
    return Setup(policy, line, recipient, zone)


# Each step: minutes to wait, then what happens at that instant.
#   share: share if due; fail: a due attempt is rate limited (not_before set, nothing shared);
#   jump: go straight to next_share_at; inbound: a message arrives, keeping the chat alive.
steps = st.lists(
    st.tuples(
        st.integers(1, 30 * 60),
        st.sampled_from(["share", "share", "share", "jump", "jump", "fail", "inbound"]),
        st.integers(1, 180),
    ),
    min_size=10,
    max_size=80,
)


def new_chat(first: datetime, recipient: str) -> ChatFacts:
    return ChatFacts(
        service="iMessage",
        is_group=False,
        status=ChatStatus.active.value,
        recipient=recipient,
        first_outbound_at=first,
        last_outbound_at=first,
        last_inbound_at=None,
        last_shared_at=None,
        share_count=0,
    )


def inactive_deadline(chat: ChatFacts, policy: Policy) -> datetime | None:
    if policy.stop_after_inactive_days is None:
        return None
    seen = [
        t
        for t in (chat.first_outbound_at, chat.last_outbound_at, chat.last_inbound_at)
        if t is not None
    ]
    return max(seen) + timedelta(days=policy.stop_after_inactive_days)


def due_by_definition(chat: ChatFacts, line: LineFacts, policy: Policy, t: datetime) -> bool:
    """The design's definition of "due at t", checked directly at one instant."""
    if not line.card_active or line.paused or chat.status != ChatStatus.active.value:
        return False
    if (chat.service or "").lower() != "imessage" or (chat.is_group and not policy.include_groups):
        return False
    if policy.max_shares is not None and chat.share_count >= policy.max_shares:
        return False
    first = chat.first_outbound_at
    if first is None or t < first + policy.first_share_delay:
        return False
    last = chat.last_shared_at
    if last is not None and t < last + policy.min_interval:
        return False
    if chat.not_before is not None and t < chat.not_before:
        return False
    deadline = inactive_deadline(chat, policy)
    if deadline is not None and t >= deadline:
        return False
    zone = zone_for(chat, line, policy)
    local_date = t.astimezone(zone).date()
    # A window holding t opened on t's local date or, when it crosses midnight, the day before.
    for day in (local_date - timedelta(days=1), local_date):
        opens, closes = window_bounds(day, zone, policy)
        if opens <= t < closes:
            if day.weekday() not in policy.days:
                return False
            return last is None or day != share_day(last, zone, policy)
    return False


def steady_offset(zone: ZoneInfo, t: datetime) -> bool:
    """No DST change within a day either side of t (so plain wall-clock reasoning holds)."""
    offsets = {(t + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-27, 28, 3)}
    return len(offsets) == 1


def in_window_by_wall_clock(t: datetime, day: date, zone: ZoneInfo, policy: Policy) -> bool:
    local = t.astimezone(zone)
    start, end = policy.window_start, policy.window_end
    if end > start:
        return local.date() == day and start <= local.time() < end
    return (local.date() == day and local.time() >= start) or (
        local.date() == day + timedelta(days=1) and local.time() < end
    )


def check_gap_not_due(
    chat: ChatFacts, line: LineFacts, policy: Policy, t: datetime, nxt: datetime | None
) -> None:
    """Nothing strictly between t and nxt is due (or nothing in the next 10 days if nxt is None)."""
    horizon = nxt if nxt is not None else t + timedelta(days=10)
    span = horizon - t
    for fraction in (0.001, 0.25, 0.5, 0.75, 0.999):
        probe = t + span * fraction
        if t < probe < horizon:
            assert not is_due(chat, line, policy, probe), (t, probe, nxt)
            assert not due_by_definition(chat, line, policy, probe), (t, probe, nxt)
    if nxt is not None and span > timedelta(seconds=1):
        assert not is_due(chat, line, policy, nxt - timedelta(seconds=1))


@SETTINGS
@given(setup=setups(), data=st.data())
def test_simulated_history_keeps_every_promise(setup: Setup, data: st.DataObject) -> None:
    policy, line, zone = setup.policy, setup.line, setup.zone
    start = data.draw(instants(zone))
    plan = data.draw(steps)
    chat = new_chat(start, setup.recipient)
    assert zone_for(chat, line, policy) == zone
    shares: list[tuple[datetime, ChatFacts]] = []
    t = start
    for wait, action, backoff in plan:
        if action == "jump":
            target = next_share_at(chat, line, policy, t)
            t = target if target is not None else t + timedelta(minutes=wait)
        else:
            t += timedelta(minutes=wait)
        if action == "inbound":
            chat = chat._replace(last_inbound_at=t)

        nxt = next_share_at(chat, line, policy, t)
        due = is_due(chat, line, policy, t)
        assert due == (nxt == t)
        assert nxt is None or nxt >= t
        assert due == due_by_definition(chat, line, policy, t)
        if not due:
            check_gap_not_due(chat, line, policy, t, nxt)
            if nxt is not None:
                assert is_due(chat, line, policy, nxt)
            continue
        if action == "fail":
            chat = chat._replace(not_before=t + timedelta(minutes=backoff))
            assert not is_due(chat, line, policy, t)
            continue
        shares.append((t, chat))
        chat = chat._replace(last_shared_at=t, share_count=chat.share_count + 1)
        assert not is_due(chat, line, policy, t)

    event(f"shares: {min(len(shares), 5)}{'+' if len(shares) >= 5 else ''}")
    first = start + policy.first_share_delay
    if policy.max_shares is not None:
        assert len(shares) <= policy.max_shares
    days = [share_day(s, zone, policy) for s, _ in shares]
    assert len(set(days)) == len(days), "two shares on one day"
    assert days == sorted(days)
    for (s, before), day in zip(shares, days, strict=True):
        assert s >= first
        assert day.weekday() in policy.days
        opens, closes = window_bounds(day, zone, policy)
        assert opens <= s < closes
        if steady_offset(zone, s):
            assert in_window_by_wall_clock(s, day, zone, policy)
        if before.not_before is not None:
            assert s >= before.not_before
        deadline = inactive_deadline(before, policy)
        assert deadline is None or s < deadline
    for (earlier, _), (later, _) in pairwise(shares):
        assert later - earlier >= policy.min_interval


@st.composite
def chats_at(draw: st.DrawFn, recipient: str, zone: ZoneInfo) -> tuple[ChatFacts, datetime]:
    now = draw(instants(zone))

    def around(low_hours: int, high_hours: int) -> datetime:
        return now + timedelta(minutes=draw(st.integers(low_hours * 60, high_hours * 60)))

    first = around(-draw(st.sampled_from([2, 4, 20])) * 24, 24)
    last_out = draw(st.one_of(st.none(), st.just(first), st.builds(lambda: around(-5 * 24, 2))))
    last_in = draw(st.one_of(st.none(), st.builds(lambda: around(-25 * 24, 2))))
    last_shared = draw(st.one_of(st.none(), st.builds(lambda: around(-4 * 24, 0))))
    not_before = draw(st.one_of(st.none(), st.builds(lambda: around(-2, 48))))
    chat = ChatFacts(
        service="iMessage",
        is_group=False,
        status=ChatStatus.active.value,
        recipient=recipient,
        first_outbound_at=first,
        last_outbound_at=last_out,
        last_inbound_at=last_in,
        last_shared_at=last_shared,
        share_count=draw(st.integers(0, 20)),
        not_before=not_before,
    )
    # Mostly eligible chats, so the window arithmetic is what gets exercised.
    spoiler = draw(st.sampled_from([None] * 6 + ["service", "status", "group"]))
    if spoiler == "service":
        chat = chat._replace(service=draw(st.sampled_from(["SMS", "RCS", None])))
    elif spoiler == "status":
        chat = chat._replace(status=draw(st.sampled_from([s.value for s in ChatStatus])))
    elif spoiler == "group":
        chat = chat._replace(is_group=True)
    return chat, now


@SETTINGS
@given(setup=setups(), data=st.data())
def test_next_share_at_is_the_first_due_instant(setup: Setup, data: st.DataObject) -> None:
    policy = dataclasses.replace(setup.policy, include_groups=data.draw(st.booleans()))
    line_state = data.draw(st.sampled_from(["ok"] * 8 + ["card_inactive", "paused"]))
    line = dataclasses.replace(
        setup.line, card_active=line_state != "card_inactive", paused=line_state == "paused"
    )
    chat, now = data.draw(chats_at(setup.recipient, setup.zone))
    nxt = next_share_at(chat, line, policy, now)
    assert is_due(chat, line, policy, now) == (nxt == now)
    assert due_by_definition(chat, line, policy, now) == (nxt == now)
    if ineligible_reason(chat, line, policy, now) is not None:
        assert nxt is None
    check_gap_not_due(chat, line, policy, now, nxt)
    event("never" if nxt is None else "due now" if nxt == now else "due later")
    if nxt is None:
        return
    assert nxt >= now
    assert is_due(chat, line, policy, nxt)
    assert due_by_definition(chat, line, policy, nxt)
    # Asking again from any instant up to nxt gives the same answer.
    middle = now + (nxt - now) * data.draw(st.floats(0, 1))
    assert next_share_at(chat, line, policy, min(middle, nxt)) == nxt


@SETTINGS
@given(setup=setups(), data=st.data())
def test_windows_are_ordered_and_disjoint(setup: Setup, data: st.DataObject) -> None:
    policy, zone = setup.policy, setup.zone
    when = data.draw(instants(zone))
    day = share_day(when, zone, policy)
    bounds = [window_bounds(day + timedelta(days=i), zone, policy) for i in range(-1, 3)]
    for opens, closes in bounds:
        assert opens <= closes
        assert closes - opens <= timedelta(hours=27)
    for (_, closes), (opens, _) in pairwise(bounds):
        assert closes <= opens
    # An instant inside the window of a day counts for that day; its end belongs to the next.
    fresh = new_chat(when - timedelta(days=30), setup.recipient)
    alive = dataclasses.replace(
        policy, stop_after_inactive_days=None, first_share_delay=timedelta(0)
    )
    for i, (opens, closes) in enumerate(bounds):
        opening_day = day + timedelta(days=i - 1)
        if opens < closes:
            for probe in (opens, opens + (closes - opens) / 2, closes - timedelta(seconds=1)):
                if probe >= opens:
                    assert share_day(probe, zone, policy) == opening_day
        after = opening_day + timedelta(days=1 if policy.crosses_midnight else 0)
        assert share_day(closes, zone, policy) == after
        tick = timedelta(microseconds=1)
        for edge in (opens - tick, opens, closes - tick, closes):
            due = is_due(fresh, setup.line, alive, edge)
            assert due == due_by_definition(fresh, setup.line, alive, edge), edge
            if opens <= edge < closes:
                assert due == (opening_day.weekday() in policy.days)


@SETTINGS
@given(zone_name=st.sampled_from(ZONES), data=st.data())
def test_window_bounds_match_the_wall_clock(zone_name: str, data: st.DataObject) -> None:
    zone = ZoneInfo(zone_name)
    times = st.one_of(wall_times, wall_times_near_jumps(zone))
    start = data.draw(times)
    end = data.draw(times.filter(lambda t: t != start))
    # The night before a jump too: a crossing-midnight window ends on the jump's date.
    day = share_day(data.draw(instants(zone)), zone, Policy()) - timedelta(
        days=data.draw(st.integers(0, 1))
    )
    policy = Policy(timezone=zone_name, window_start=start, window_end=end)
    zone = ZoneInfo(zone_name)
    opens, closes = window_bounds(day, zone, policy)
    end_day = day + timedelta(days=1) if end < start else day
    for instant, wall in (
        (opens, datetime.combine(day, start)),
        (closes, datetime.combine(end_day, end)),
    ):
        local = instant.astimezone(zone)
        if local.replace(tzinfo=None) == wall:
            # A repeated wall time means its first occurrence.
            assert local.fold == 0
            continue
        # The wall time does not exist that day: the bound is the instant the clock jumps over it.
        just_before = (instant - timedelta(seconds=1)).astimezone(zone)
        assert just_before.utcoffset() != local.utcoffset()
        assert just_before.replace(tzinfo=None) < wall < local.replace(tzinfo=None)
