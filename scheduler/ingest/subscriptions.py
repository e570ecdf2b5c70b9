"""What ``webhooks ensure`` must do to Linq's webhook subscriptions. Pure code.

One subscription per target URL: the daemon's URL must receive exactly the event types the
daemon reads, for the configured lines (every line when none is configured), and be active.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scheduler.ingest.events import CARD_EVENTS, CHAT_EVENTS, MESSAGE_EVENTS, PARTICIPANT_EVENTS
from scheduler.linq.types import WebhookSubscription

# The event types the daemon acts on. phone_number.status_updated pauses and resumes a line.
DAEMON_EVENTS: tuple[str, ...] = tuple(
    sorted(
        MESSAGE_EVENTS
        | CHAT_EVENTS
        | PARTICIPANT_EVENTS
        | CARD_EVENTS
        | {"phone_number.status_updated"}
    )
)

Action = Literal["create", "update", "unchanged"]


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    action: Action
    target_url: str
    events: tuple[str, ...]
    phone_numbers: tuple[str, ...]
    subscription_id: str | None = None
    # For an update: the fields that differ (names of the API's fields).
    changes: tuple[str, ...] = ()


def plan_subscription(
    existing: Sequence[WebhookSubscription],
    target_url: str,
    lines: Sequence[str],
    events: Sequence[str] = DAEMON_EVENTS,
) -> SubscriptionPlan:
    """Create the URL's subscription, or update what differs from the wanted one, or nothing."""
    wanted_events = tuple(sorted(set(events)))
    wanted_lines = tuple(sorted(set(lines)))
    match = next((s for s in existing if s.target_url == target_url), None)
    if match is None:
        return SubscriptionPlan("create", target_url, wanted_events, wanted_lines)
    changes = []
    if tuple(sorted(set(match.subscribed_events))) != wanted_events:
        changes.append("subscribed_events")
    if tuple(sorted(set(match.phone_numbers))) != wanted_lines:
        changes.append("phone_numbers")
    if not match.is_active:
        changes.append("is_active")
    return SubscriptionPlan(
        "update" if changes else "unchanged",
        target_url,
        wanted_events,
        wanted_lines,
        subscription_id=match.id,
        changes=tuple(changes),
    )
