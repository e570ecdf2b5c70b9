"""The pure plan behind ``webhooks ensure``."""

from __future__ import annotations

import pytest

from scheduler.ingest.events import KNOWN_EVENTS
from scheduler.ingest.subscriptions import DAEMON_EVENTS, plan_subscription
from scheduler.linq.types import CreatedWebhookSubscription, WebhookSubscription
from scheduler.sim.settings import SimSettings

URL = "https://scheduler.example.com/webhooks/linq"
LINES = ["+14155550111", "+14155550100"]


def sub(**changes: object) -> WebhookSubscription:
    fields: dict[str, object] = {
        "id": "sub-1",
        "target_url": URL,
        "subscribed_events": list(reversed(DAEMON_EVENTS)),
        "phone_numbers": sorted(LINES),
        "is_active": True,
        **changes,
    }
    return WebhookSubscription.model_validate(fields)


def test_no_subscription_for_the_url_is_created() -> None:
    plan = plan_subscription([sub(target_url="https://other.example/")], URL, LINES)
    assert plan.action == "create"
    assert plan.subscription_id is None
    assert plan.phone_numbers == tuple(sorted(LINES))
    assert plan.events == tuple(sorted(DAEMON_EVENTS))


def test_the_same_subscription_in_another_order_is_unchanged() -> None:
    plan = plan_subscription([sub()], URL, list(reversed(LINES)))
    assert (plan.action, plan.subscription_id, plan.changes) == ("unchanged", "sub-1", ())


def test_only_what_differs_is_updated() -> None:
    drifted = sub(subscribed_events=["message.sent"], is_active=False)
    plan = plan_subscription([drifted], URL, LINES)
    assert plan.action == "update"
    assert plan.changes == ("subscribed_events", "is_active")


def test_no_configured_lines_means_every_line() -> None:
    plan = plan_subscription([sub()], URL, [])
    assert plan.changes == ("phone_numbers",)
    assert plan.phone_numbers == ()
    assert plan_subscription([sub(phone_numbers=None)], URL, []).action == "unchanged"


def test_the_daemon_subscribes_to_what_it_reads_and_not_to_what_it_ignores() -> None:
    assert "message.sent" in DAEMON_EVENTS and "contact_card.updated" in DAEMON_EVENTS
    assert "participant.removed" in DAEMON_EVENTS
    assert "message.failed" not in DAEMON_EVENTS
    assert "contact_card.received" not in DAEMON_EVENTS
    assert "chat.updated" not in DAEMON_EVENTS
    assert set(DAEMON_EVENTS) - {"phone_number.status_updated"} <= KNOWN_EVENTS


def test_a_created_subscriptions_secret_stays_out_of_its_repr() -> None:
    created = CreatedWebhookSubscription.model_validate(
        {"id": "s", "target_url": URL, "signing_secret": "whsec_c2VjcmV0LXZhbHVl"}
    )
    assert "c2VjcmV0LXZhbHVl" not in repr(created) + str(created)
    assert created.signing_secret.get_secret_value() == "whsec_c2VjcmV0LXZhbHVl"


def test_the_simulator_refuses_a_malformed_whsec_secret_by_name() -> None:
    with pytest.raises(ValueError, match="webhook_secret: the part after whsec_ is not base64"):
        SimSettings(webhook_secret="whsec_!!")
