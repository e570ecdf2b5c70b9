"""The sharing rule: when is a chat due for its contact card share?

Pure code: no I/O and no clock reads. Callers pass ``now`` and plain facts about the chat and
its line, so the rule can be exercised with any instant, zone and policy.

A chat is due at ``t`` when it is eligible (card active, nothing paused, not opted out or gone,
an iMessage chat, groups as configured, an outbound message seen, still alive, under the share
cap), ``t`` lies inside the share window of an allowed day ``D``, ``D`` is not the day of the last
share, and the delays (first share delay, minimum interval, retry backoff) have passed.

Windows are defined in local wall time and converted to UTC with zoneinfo. A window that
crosses midnight (22:00-02:00) belongs to the day it opens, and so does every share made in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.core.status import ChatStatus

if TYPE_CHECKING:
    from scheduler.config import SharingConfig

__all__ = [
    "ChatFacts",
    "LineFacts",
    "Policy",
    "Verdict",
    "explain",
    "ineligible_reason",
    "is_due",
    "next_share_at",
    "share_day",
    "window_bounds",
    "zone_for",
]

TIMEZONE_LINE = "line"
TIMEZONE_RECIPIENT = "recipient"

_ONE_DAY = timedelta(days=1)
_ALL_DAYS = frozenset(range(7))
# The scan starts at most one day before the share day of the lower bound. With every
# weekday in 7 consecutive days, a skipped "already shared" day and the non-monotonic share
# day a crossing-midnight window has in a fall-back hour, 11 days always reach a window.
_SCAN_DAYS = 11
_UNKNOWN_ZONE = "Etc/Unknown"
_ACTIVE = ChatStatus.active.value
_STATUS_REASONS = {
    ChatStatus.paused.value: "chat_paused",
    ChatStatus.opted_out.value: "opted_out",
    ChatStatus.blocked.value: "blocked",
    ChatStatus.gone.value: "gone",
}


class ChatFacts(NamedTuple):
    """What the rule needs to know about one chat. Datetimes are timezone-aware UTC.

    A named tuple, as the ledger's ``ChatState``: a claim re-checks hundreds of chats at a
    time, and a tuple is built in one C call where a frozen dataclass sets each field through
    ``object.__setattr__`` (1.4 against 0.5 us a chat).
    """

    service: str | None
    is_group: bool
    status: str
    recipient: str | None
    first_outbound_at: datetime | None
    last_outbound_at: datetime | None
    last_inbound_at: datetime | None
    last_shared_at: datetime | None
    share_count: int
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the rule needs to know about the line (our number) a chat belongs to."""

    card_active: bool
    paused: bool
    timezone: str | None
    # While the line is ineligible (2027, FLAGGED), no share before its next probe.
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The sharing knobs, validated, with their zones resolved once.

    ``timezone`` is an IANA zone name, ``"line"`` (the line's zone) or ``"recipient"`` (the
    zone of the recipient's phone number); ``fallback_timezone`` covers lines without a zone
    and recipients whose zone cannot be told. ``days`` holds weekday numbers, 0 = Monday, of
    the day a window opens.
    """

    timezone: str = "UTC"
    fallback_timezone: str = "UTC"
    window_start: time = time(9, 0)
    window_end: time = time(20, 0)
    days: frozenset[int] = _ALL_DAYS
    min_interval: timedelta = timedelta(hours=12)
    first_share_delay: timedelta = timedelta(0)
    stop_after_inactive_days: int | None = 30
    max_shares: int | None = None
    include_groups: bool = False
    fixed_zone: ZoneInfo | None = field(init=False, repr=False, compare=False)
    fallback_zone: ZoneInfo = field(init=False, repr=False, compare=False)
    crosses_midnight: bool = field(init=False, repr=False, compare=False)
    inactive_after: timedelta | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fallback = _named_zone(self.fallback_timezone)
        if fallback is None:
            raise ValueError(f"unknown fallback time zone {self.fallback_timezone!r}")
        fixed: ZoneInfo | None = None
        if self.timezone not in (TIMEZONE_LINE, TIMEZONE_RECIPIENT):
            fixed = _named_zone(self.timezone)
            if fixed is None:
                raise ValueError(
                    f"unknown time zone {self.timezone!r} (an IANA name, 'line' or 'recipient')"
                )
        for name in ("window_start", "window_end"):
            value: time = getattr(self, name)
            if value.tzinfo is not None:
                raise ValueError(f"{name} must be a local wall time without tzinfo")
            if value.fold:
                # Ambiguous wall times always mean their first occurrence; a stray fold=1
                # would silently pick the second one through datetime.combine.
                object.__setattr__(self, name, value.replace(fold=0))
        if self.window_start == self.window_end:
            raise ValueError("the share window is empty: start and end are equal")
        days = frozenset(self.days)
        if not days or not days <= _ALL_DAYS:
            raise ValueError("days must be a non-empty set of weekday numbers 0 (Mon) to 6 (Sun)")
        if self.min_interval < timedelta(0) or self.first_share_delay < timedelta(0):
            raise ValueError("min_interval and first_share_delay cannot be negative")
        if self.stop_after_inactive_days is not None and self.stop_after_inactive_days < 1:
            raise ValueError("stop_after_inactive_days must be at least 1 (or None)")
        if self.max_shares is not None and self.max_shares < 1:
            raise ValueError("max_shares must be at least 1 (or None)")
        inactive_after = (
            None
            if self.stop_after_inactive_days is None
            else timedelta(days=self.stop_after_inactive_days)
        )
        object.__setattr__(self, "days", days)
        object.__setattr__(self, "fixed_zone", fixed)
        object.__setattr__(self, "fallback_zone", fallback)
        object.__setattr__(self, "crosses_midnight", self.window_end < self.window_start)
        object.__setattr__(self, "inactive_after", inactive_after)

    @classmethod
    def from_config(cls, cfg: SharingConfig) -> Policy:
        return cls(
            timezone=cfg.timezone,
            fallback_timezone=cfg.fallback_timezone,
            window_start=cfg.window.start,
            window_end=cfg.window.end,
            days=frozenset(day.number for day in cfg.window.days),
            min_interval=cfg.min_interval,
            first_share_delay=cfg.first_share_delay,
            stop_after_inactive_days=cfg.stop_after_inactive_days,
            max_shares=cfg.max_shares,
            include_groups=cfg.include_groups,
        )


@lru_cache(maxsize=1024)
def _named_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65536)
def _recipient_zone(handle: str) -> ZoneInfo | None:
    # Parsing and classifying a number costs tens of microseconds; the same recipient is
    # recomputed every time its chat changes, hence the cache on the handle.
    if not handle.startswith("+"):
        return None  # an email address, or not E.164: no zone to derive
    # Imported here: only `sharing.timezone: recipient` needs it, and it costs about 1.3 MB
    # resident and 20 ms of start-up to every daemon that loads it.
    import phonenumbers
    from phonenumbers import timezone as phone_timezone

    try:
        number = phonenumbers.parse(handle, None)
    except phonenumbers.NumberParseException:
        return None
    zones = phone_timezone.time_zones_for_number(number)
    # A number that spans several zones (toll-free, many mobile ranges) says nothing about
    # where its owner is: the fallback zone is a better guess than the first name listed.
    if len(zones) != 1 or zones[0] == _UNKNOWN_ZONE:
        return None
    return _named_zone(zones[0])


def zone_for(chat: ChatFacts, line: LineFacts, policy: Policy) -> ZoneInfo:
    """The zone whose wall clock the chat's share window follows."""
    fixed = policy.fixed_zone
    if fixed is not None:
        return fixed
    if policy.timezone == TIMEZONE_LINE:
        zone = _named_zone(line.timezone) if line.timezone else None
    else:
        zone = _recipient_zone(chat.recipient) if chat.recipient else None
    return policy.fallback_zone if zone is None else zone


def share_day(t: datetime, zone: ZoneInfo, policy: Policy) -> date:
    """The day a share at ``t`` counts for: the opening day of the window ``t`` belongs to."""
    return _share_day(t, zone, policy.crosses_midnight, policy.window_end)


def _share_day(t: datetime, zone: ZoneInfo, crosses_midnight: bool, window_end: time) -> date:
    local = t.astimezone(zone)
    if crosses_midnight and local.time() < window_end:
        return local.date() - _ONE_DAY
    return local.date()


# Every chat of a batch that is due at the batch's ``now`` asks for the day of that same
# instant in one of a few zones: the zone conversion (half a microsecond) is done once each.
_share_day_of_now = lru_cache(maxsize=256)(_share_day)


def window_bounds(day: date, zone: ZoneInfo, policy: Policy) -> tuple[datetime, datetime]:
    """UTC start and end (exclusive) of the window that opens on ``day``."""
    return _bounds(day, zone, policy.window_start, policy.window_end)


@lru_cache(maxsize=16384)
def _bounds(day: date, zone: ZoneInfo, start: time, end: time) -> tuple[datetime, datetime]:
    # Each (day, zone) pair is asked for by every chat in that zone, so the zone arithmetic
    # is done once per pair instead of once per chat.
    end_day = day + _ONE_DAY if end < start else day
    return (
        _wall_to_utc(datetime.combine(day, start), zone),
        _wall_to_utc(datetime.combine(end_day, end), zone),
    )


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """Convert a naive local wall time to UTC, choosing sensibly at DST transitions.

    An ambiguous wall time (fall back) means its first occurrence. A wall time skipped by a
    spring-forward gap means the first instant after the gap: the clock never shows it, so
    the window opens when the clock jumps.
    """
    local = wall.replace(tzinfo=zone, fold=0)
    before = local.utcoffset()
    after = local.replace(fold=1).utcoffset()
    assert before is not None  # a ZoneInfo always knows its offset
    assert after is not None
    if before >= after:
        return (wall - before).replace(tzinfo=UTC)
    # In a gap, fold=0 applies the earlier offset and fold=1 the later one, so the transition
    # instant lies in (wall - after, wall - before]. tzdata transitions fall on whole seconds.
    epoch = datetime(1970, 1, 1)
    low = int((wall - after - epoch) // timedelta(seconds=1))
    high = -int(-(wall - before - epoch) // timedelta(seconds=1))
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return datetime.fromtimestamp(high, UTC)


def _static_reason(chat: ChatFacts, line: LineFacts, policy: Policy) -> str | None:
    if not line.card_active:
        return "card_inactive"
    if line.paused:
        return "line_paused"
    status = chat.status
    if status != _ACTIVE:
        return _STATUS_REASONS.get(status, "status_unknown")
    service = chat.service
    if service is None:
        # Sharing does nothing on SMS or RCS and Linq may not say so; an unknown service
        # waits until it is known rather than relying on an error.
        return "service_unknown"
    if service.lower() != "imessage":
        return "not_imessage"
    if chat.is_group and not policy.include_groups:
        return "group"
    if chat.first_outbound_at is None:
        return "no_outbound"
    if policy.max_shares is not None and chat.share_count >= policy.max_shares:
        return "max_shares"
    return None


def _inactive_deadline(chat: ChatFacts, policy: Policy) -> datetime | None:
    """The instant from which the chat counts as dead, or None when it never does."""
    after = policy.inactive_after
    if after is None:
        return None
    latest = chat.first_outbound_at
    seen = chat.last_outbound_at
    if seen is not None and (latest is None or seen > latest):
        latest = seen
    seen = chat.last_inbound_at
    if seen is not None and (latest is None or seen > latest):
        latest = seen
    return None if latest is None else latest + after


def ineligible_reason(
    chat: ChatFacts, line: LineFacts, policy: Policy, now: datetime
) -> str | None:
    """Why the chat cannot be due at ``now`` whatever the window, or None if it can be."""
    reason = _static_reason(chat, line, policy)
    if reason is not None:
        return reason
    deadline = _inactive_deadline(chat, policy)
    if deadline is not None and now >= deadline:
        return "inactive"
    return None


def next_share_at(
    chat: ChatFacts, line: LineFacts, policy: Policy, now: datetime
) -> datetime | None:
    """The earliest instant at or after ``now`` when the chat is due, or None for never."""
    if _static_reason(chat, line, policy) is not None:
        return None
    first = chat.first_outbound_at
    assert first is not None  # _static_reason rejects chats without an outbound message
    lower = now
    bound = first + policy.first_share_delay
    if bound > lower:
        lower = bound
    last = chat.last_shared_at
    if last is not None:
        bound = last + policy.min_interval
        if bound > lower:
            lower = bound
    retry = chat.not_before
    if retry is not None and retry > lower:
        lower = retry
    probe = line.not_before
    if probe is not None and probe > lower:
        lower = probe
    deadline = _inactive_deadline(chat, policy)
    if deadline is not None and lower >= deadline:
        return None

    zone = zone_for(chat, line, policy)
    crosses, end = policy.crosses_midnight, policy.window_end
    shared_day = None if last is None else _share_day(last, zone, crosses, end)
    # ``lower`` is ``now`` itself unless a delay pushed it later. Cached only for a UTC
    # ``now``: two equal times of another zone may be different instants (``fold``).
    cached = lower is now and now.tzinfo is UTC
    day = (_share_day_of_now if cached else _share_day)(lower, zone, crosses, end)
    if crosses:
        # Only a crossing window can still be open on a later local date than the one it
        # counts for; a daytime window of the day before has surely closed by now.
        day -= _ONE_DAY
    days = policy.days
    start = policy.window_start
    for _ in range(_SCAN_DAYS):
        if day != shared_day and day.weekday() in days:
            opens, closes = _bounds(day, zone, start, end)
            # opens < closes guards a window swallowed whole by a gap (a skipped date).
            if closes > lower and opens < closes:
                due = opens if opens > lower else lower
                if deadline is not None and due >= deadline:
                    return None
                return due
        day += _ONE_DAY
    return None


def is_due(chat: ChatFacts, line: LineFacts, policy: Policy, now: datetime) -> bool:
    """Whether the chat may be shared at ``now``."""
    return next_share_at(chat, line, policy, now) == now


# Why a chat that can share is not due now: the constraint that holds its next share back.
WAIT_REASONS = (
    "first_share_delay",
    "min_interval",
    "retry_backoff",
    "shared_today",
    "day_not_allowed",
    "outside_window",
    "inactive_before_window",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a chat is due at ``now`` and why, with the next instant it will be.

    ``reason`` is ``"due"``; a reason of ``ineligible_reason`` (``line_paused``,
    ``card_inactive``, ``opted_out``...), when it never is; or one of ``WAIT_REASONS``.
    """

    due: bool
    reason: str
    next_at: datetime | None


def explain(chat: ChatFacts, line: LineFacts, policy: Policy, now: datetime) -> Verdict:
    """The rule's answer for ``chat`` at ``now``, with its reason (agrees with ``is_due``)."""
    never = ineligible_reason(chat, line, policy, now)
    if never is not None:
        return Verdict(False, never, None)
    at = next_share_at(chat, line, policy, now)
    if at is None:
        # Eligible now, but it goes quiet before any window it could share in opens.
        return Verdict(False, "inactive_before_window", None)
    if at == now:
        return Verdict(True, "due", at)
    zone = zone_for(chat, line, policy)
    last = chat.last_shared_at
    if last is not None and share_day(last, zone, policy) == share_day(now, zone, policy):
        return Verdict(False, "shared_today", at)
    lower, reason = now, ""
    first = chat.first_outbound_at
    for bound, name in (
        (None if first is None else first + policy.first_share_delay, "first_share_delay"),
        (None if last is None else last + policy.min_interval, "min_interval"),
        (chat.not_before, "retry_backoff"),
    ):
        if bound is not None and bound > lower:
            lower, reason = bound, name
    if reason and at == lower:
        return Verdict(False, reason, at)
    # Held back by the calendar: the day of ``lower`` is not a sharing day, or its window
    # is not open then.
    day = share_day(lower, zone, policy)
    opens, closes = window_bounds(day, zone, policy)
    if opens <= lower < closes and day.weekday() not in policy.days:
        return Verdict(False, "day_not_allowed", at)
    return Verdict(False, "outside_window", at)
