"""Webhook subscriptions of the simulated account, in the shapes of Linq's SDK.

``POST /v3/webhook-subscriptions`` answers the subscription with its ``signing_secret`` (a
fresh ``whsec_`` secret), and only that once; reads and updates never show it again. Where
Linq's documentation is silent, these choices are made:

- One subscription per ``target_url``: a second ``POST`` for the same URL is 409 (1001).
- ``target_url`` must be HTTPS (as Linq requires); event types must look like ``a.b``;
  ``phone_numbers`` must be E.164. Bad values are 400 (1001, 1002 for a phone number, 1003
  for a missing field).
- An unknown subscription id is 404 (1001).

The simulator keeps delivering to the URL and secret it was started with (or was given
through ``/_sim/webhooks``); subscriptions are records, not delivery targets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler import clock
from scheduler.config import E164
from scheduler.ingest.signing import new_standard_secret
from scheduler.sim.model import SimError, iso

_EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
_FIELDS = frozenset({"target_url", "subscribed_events", "phone_numbers", "is_active"})


@dataclass(slots=True)
class Subscription:
    id: str
    target_url: str
    subscribed_events: list[str]
    phone_numbers: list[str] | None
    is_active: bool
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target_url": self.target_url,
            "subscribed_events": list(self.subscribed_events),
            "phone_numbers": None if self.phone_numbers is None else list(self.phone_numbers),
            "is_active": self.is_active,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def _target_url(value: Any) -> str:
    if value is None or value == "":
        raise SimError(400, 1003, "target_url is required")
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 2048:
        raise SimError(400, 1001, "target_url must be an https:// URL")
    return value


def _events(value: Any) -> list[str]:
    if value is None:
        raise SimError(400, 1003, "subscribed_events is required")
    if not isinstance(value, list) or not value:
        raise SimError(400, 1001, "subscribed_events must be a non-empty list of event types")
    for item in value:
        if not isinstance(item, str) or not _EVENT_TYPE.match(item):
            raise SimError(400, 1001, f"subscribed_events: {item!r} is not an event type")
    return list(dict.fromkeys(value))


def _numbers(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise SimError(400, 1001, "phone_numbers must be a list of E.164 numbers")
    for item in value:
        if not isinstance(item, str) or not E164.match(item):
            raise SimError(400, 1002, f"phone_numbers: {item!r} is not an E.164 phone number")
    return list(value) or None


class SubscriptionStore:
    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self.items: dict[str, Subscription] = {}

    def reset(self) -> None:
        self.items.clear()

    def get(self, subscription_id: str) -> Subscription:
        found = self.items.get(subscription_id)
        if found is None:
            raise SimError(404, 1001, f"webhook subscription {subscription_id} not found")
        return found

    def _check_unique(self, url: str, own_id: str | None = None) -> None:
        for other in self.items.values():
            if other.target_url == url and other.id != own_id:
                raise SimError(409, 1001, f"a subscription for {url} already exists")

    def create(self, body: dict[str, Any]) -> tuple[Subscription, str]:
        """The new subscription and its signing secret (shown this once)."""
        url = _target_url(body.get("target_url"))
        events = _events(body.get("subscribed_events"))
        numbers = _numbers(body.get("phone_numbers"))
        self._check_unique(url)
        at = clock.now()
        subscription = Subscription(self._new_id(), url, events, numbers, True, at, at)
        self.items[subscription.id] = subscription
        return subscription, new_standard_secret()

    def update(self, subscription_id: str, body: dict[str, Any]) -> Subscription:
        subscription = self.get(subscription_id)
        unknown = set(body) - _FIELDS - {"routing_id_header", "routing_key_header"}
        if unknown:
            raise SimError(400, 1001, f"unknown field(s): {', '.join(sorted(unknown))}")
        url = _target_url(body["target_url"]) if "target_url" in body else None
        events = _events(body["subscribed_events"]) if "subscribed_events" in body else None
        numbers = _numbers(body["phone_numbers"]) if "phone_numbers" in body else None
        active = body.get("is_active")
        if active is not None and not isinstance(active, bool):
            raise SimError(400, 1001, "is_active must be true or false")
        if url is not None:
            self._check_unique(url, subscription.id)
            subscription.target_url = url
        if events is not None:
            subscription.subscribed_events = events
        if "phone_numbers" in body:
            subscription.phone_numbers = numbers
        if active is not None:
            subscription.is_active = active
        subscription.updated_at = clock.now()
        return subscription

    def delete(self, subscription_id: str) -> None:
        self.get(subscription_id)
        del self.items[subscription_id]
