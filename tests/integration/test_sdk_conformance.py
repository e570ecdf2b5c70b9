"""Linq's official SDK (linq-python) as the oracle: it reads the simulator over loopback HTTP.

The SDK client runs with strict response validation, so each answer is validated against
the SDK's own response type; webhooks are verified and typed with ``client.webhooks.unwrap``
and validated again, strictly, against the event type's model (``unwrap`` only constructs).
A change to the simulator that breaks one of Linq's shapes fails here.
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from linq import LinqAPIV3 as Linq
from linq.types import (
    ChatCreatedWebhookEvent,
    ChatCreateResponse,
    ContactCardCreatedWebhookEvent,
    ContactCardDeletedWebhookEvent,
    ContactCardRetrieveResponse,
    ContactCardUpdatedWebhookEvent,
    MessageDeliveredWebhookEvent,
    MessageFailedWebhookEvent,
    MessageReceivedWebhookEvent,
    MessageSentWebhookEvent,
    ParticipantAddedWebhookEvent,
    ParticipantRemovedWebhookEvent,
    PhoneNumberListResponse,
    SetContactCard,
    WebhookSubscription,
    WebhookSubscriptionCreateResponse,
    WebhookSubscriptionListResponse,
)
from linq.types.chat import Chat as SDKChat
from linq.types.chats import (
    MessageSendResponse,
    ParticipantAddResponse,
    ParticipantRemoveResponse,
)
from linq.types.message import Message as SDKMessage
from pydantic import BaseModel

from scheduler.config import Secret
from scheduler.linq.client import LinqClient
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimControl, SimHandle
from tests.integration.test_sim_conformance import Receiver, advance

LINE = "+14155550100"
ALICE = "+14155550199"
BOB = "+14155550198"
CAROL = "+14155550197"
SECRET = "whsec_" + base64.b64encode(b"sdk-conformance-signing-key-0").decode()
URL = "https://hooks.example.com/linq"
TEXT = {"parts": [{"type": "text", "value": "Your order shipped"}]}

# Every event type the simulator emits, with the SDK model it must validate as.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    "chat.created": ChatCreatedWebhookEvent,
    "message.sent": MessageSentWebhookEvent,
    "message.delivered": MessageDeliveredWebhookEvent,
    "message.received": MessageReceivedWebhookEvent,
    "message.failed": MessageFailedWebhookEvent,
    "participant.added": ParticipantAddedWebhookEvent,
    "participant.removed": ParticipantRemovedWebhookEvent,
    "contact_card.created": ContactCardCreatedWebhookEvent,
    "contact_card.updated": ContactCardUpdatedWebhookEvent,
    "contact_card.deleted": ContactCardDeletedWebhookEvent,
}


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=0, seed=5, webhook_secret=SECRET)


@pytest.fixture
def control(sim_server: SimHandle) -> Iterator[SimControl]:
    with sim_server.control() as ctl:
        ctl.reset()
        ctl.webhooks(enabled=False)
        yield ctl


@pytest.fixture
def sdk(sim_server: SimHandle, control: SimControl) -> Iterator[Linq]:
    client = Linq(
        api_key=sim_server.token,
        base_url=sim_server.api_base,
        max_retries=0,
        _strict_response_validation=True,
    )
    with client:
        yield client


def test_contact_cards_parse_as_the_sdk_types(sdk: Linq, clock_file: Path) -> None:
    created = sdk.contact_card.create(phone_number=LINE, first_name="Acme", last_name="Inc")
    assert isinstance(created, SetContactCard)
    assert (created.phone_number, created.first_name, created.last_name) == (LINE, "Acme", "Inc")
    advance(clock_file, 1)
    read = sdk.contact_card.retrieve(phone_number=LINE)
    assert isinstance(read, ContactCardRetrieveResponse)
    assert [(c.phone_number, c.is_active) for c in read.contact_cards] == [(LINE, True)]
    updated = sdk.contact_card.update(phone_number=LINE, image_url="https://cdn.example/a.png")
    assert isinstance(updated, SetContactCard)
    assert (updated.first_name, updated.image_url) == ("Acme", "https://cdn.example/a.png")
    every = sdk.contact_card.retrieve()
    assert [c.phone_number for c in every.contact_cards] == [LINE]


def test_chats_and_messages_parse_as_the_sdk_types(sdk: Linq, control: SimControl) -> None:
    created = sdk.chats.create(from_=LINE, to=[ALICE, BOB], message=TEXT)  # type: ignore[arg-type]
    assert isinstance(created, ChatCreateResponse)
    chat = created.chat
    assert chat.is_group is True and chat.service == "iMessage"
    assert chat.health_status.status == "HEALTHY" and chat.health_status.doc_url
    assert {h.handle for h in chat.handles} == {LINE, ALICE, BOB}
    assert chat.message.delivery_status in ("sent", "delivered")

    one = sdk.chats.retrieve(chat.id)
    assert isinstance(one, SDKChat)
    assert (one.id, one.is_group, one.is_archived) == (chat.id, True, False)

    sent = sdk.chats.messages.send(chat.id, message=TEXT)  # type: ignore[arg-type]
    assert isinstance(sent, MessageSendResponse)
    assert sent.chat_id == chat.id
    assert sent.message.parts[0].type == "text"

    listed = list(sdk.chats.list_chats(from_=LINE, limit=1))
    assert [c.id for c in listed] == [chat.id]
    assert all(isinstance(c, SDKChat) for c in listed)

    control.fail_message(sent.message.id)
    messages = list(sdk.chats.messages.list(chat.id, limit=1))
    assert [m.id for m in messages] == [chat.message.id, sent.message.id]
    assert all(isinstance(m, SDKMessage) and m.is_from_me for m in messages)
    assert [(m.delivery_status, m.is_delivered) for m in messages] == [
        ("delivered", True),
        ("failed", False),
    ]


def test_phone_numbers_parse_as_the_sdk_type(sdk: Linq, control: SimControl) -> None:
    sdk.contact_card.create(phone_number=LINE, first_name="Acme")
    numbers = sdk.phone_numbers.list()
    assert isinstance(numbers, PhoneNumberListResponse)
    assert [(n.phone_number, n.reputation.status) for n in numbers.phone_numbers] == [
        (LINE, "HEALTHY")
    ]
    assert numbers.phone_numbers[0].reputation.doc_url
    control.faults(lines=[LINE, BOB])
    try:
        assert [n.phone_number for n in sdk.phone_numbers.list().phone_numbers] == [LINE, BOB]
    finally:
        control.faults(lines=None)


def test_webhook_subscriptions_parse_as_the_sdk_types(sdk: Linq) -> None:
    created = sdk.webhook_subscriptions.create(
        target_url="https://hooks.example.com/linq",
        subscribed_events=["message.sent", "chat.created"],
        phone_numbers=[LINE],
    )
    assert isinstance(created, WebhookSubscriptionCreateResponse)
    assert created.signing_secret.startswith("whsec_")
    assert created.phone_numbers == [LINE] and created.is_active
    listed = sdk.webhook_subscriptions.list()
    assert isinstance(listed, WebhookSubscriptionListResponse)
    assert [s.id for s in listed.subscriptions] == [created.id]
    assert "signing_secret" not in listed.subscriptions[0].model_dump()
    one = sdk.webhook_subscriptions.retrieve(created.id)
    assert isinstance(one, WebhookSubscription)
    updated = sdk.webhook_subscriptions.update(
        created.id, subscribed_events=["message.sent"], phone_numbers=None
    )
    assert isinstance(updated, WebhookSubscription)
    assert updated.subscribed_events == ["message.sent"]
    assert updated.phone_numbers is None
    sdk.webhook_subscriptions.delete(created.id)
    assert sdk.webhook_subscriptions.list().subscriptions == []


def test_every_simulator_webhook_verifies_and_parses_with_the_sdk(
    sdk: Linq, control: SimControl, clock_file: Path
) -> None:
    receiver = Receiver()
    try:
        control.webhooks(enabled=True, url=receiver.url, secret=SECRET)
        sdk.contact_card.create(phone_number=LINE, first_name="Acme")
        advance(clock_file, 1)
        sdk.contact_card.update(phone_number=LINE, last_name="Inc")
        chat = sdk.chats.create(from_=LINE, to=[ALICE], message=TEXT).chat  # type: ignore[arg-type]
        control.inbound(chat.id, "thanks!")
        control.fail_message(chat.message.id)
        group = sdk.chats.create(from_=LINE, to=[ALICE, BOB], message=TEXT).chat  # type: ignore[arg-type]
        added = sdk.chats.participants.add(group.id, handle=CAROL)
        assert isinstance(added, ParticipantAddResponse) and added.status
        removed = sdk.chats.participants.remove(group.id, handle=BOB)
        assert isinstance(removed, ParticipantRemoveResponse)
        control.delete_card(LINE)
        assert control.drain(10)
        deliveries = list(receiver.deliveries)
    finally:
        receiver.close()

    seen: dict[str, list[Any]] = {}
    for headers, body in deliveries:
        event = sdk.webhooks.unwrap(body.decode(), headers=headers, key=SECRET)
        payload = json.loads(body)
        model = EVENT_MODELS.get(payload["event_type"])
        assert model is not None, f"the simulator emits {payload['event_type']}, unchecked here"
        # unwrap only constructs (account events share one shape, so the class it picks may
        # be another account event's); the strict validation below is the check.
        assert event.event_type == payload["event_type"]
        strict = model.model_validate(payload)
        assert headers["webhook-id"] == payload["event_id"]
        seen.setdefault(payload["event_type"], []).append(strict)
    assert set(seen) == set(EVENT_MODELS)

    # Deliveries are concurrent, as Linq's are: their order is not the order of the events,
    # so each check picks the event it is about rather than the first of a type.
    def only(event_type: str) -> Any:
        (event,) = seen[event_type]
        return event

    card = only("contact_card.updated").data
    assert card.phone_number == LINE
    assert card.contact_card.first_name == "Acme"
    assert card.change.last_name.to == "Inc"
    assert card.change.first_name is None
    sent = {event.data.chat.id: event.data for event in seen["message.sent"]}
    assert set(sent) == {chat.id, group.id}
    assert sent[chat.id].direction == "outbound"
    assert sent[chat.id].chat.health_status.doc_url
    assert all(event.data.health_status.doc_url for event in seen["chat.created"])
    assert (only("participant.added").data.handle, only("participant.added").data.chat_id) == (
        CAROL,
        group.id,
    )
    assert only("participant.removed").data.participant.handle == BOB
    assert {h.handle for h in sdk.chats.retrieve(group.id).handles} == {LINE, ALICE, CAROL}
    failed = only("message.failed").data
    assert (failed.chat_id, failed.message_id, failed.code) == (chat.id, chat.message.id, 4001)


def test_a_wrong_key_fails_the_sdk_verification(sdk: Linq, control: SimControl) -> None:
    receiver = Receiver()
    try:
        control.webhooks(enabled=True, url=receiver.url, secret=SECRET)
        sdk.chats.create(from_=LINE, to=[ALICE], message=TEXT)  # type: ignore[arg-type]
        assert control.drain(10)
        headers, body = receiver.deliveries[0]
    finally:
        receiver.close()
    other = "whsec_" + base64.b64encode(b"not-the-simulator-key-000000").decode()
    with pytest.raises(Exception, match="signature"):
        sdk.webhooks.unwrap(body.decode(), headers=headers, key=other)


def test_the_daemon_never_imports_the_sdk() -> None:
    # The SDK is a test-only oracle: the daemon keeps its own thin client.
    package = Path(__file__).resolve().parents[2] / "scheduler"
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == "linq" or n.startswith("linq.") for n in names):
                offenders.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert offenders == []


async def test_the_daemons_client_reads_the_same_answers(
    sim_server: SimHandle, control: SimControl
) -> None:
    async with LinqClient(sim_server.api_base, Secret(sim_server.token, "test")) as client:
        # ChatCreateResponse has no created_at: the first message's time stands in for it.
        chat = await client.create_chat(LINE, [ALICE], "Your order shipped")
        assert chat.created_at is not None and chat.service == "iMessage"
        assert chat.our_handle == LINE
        assert chat.health_status is not None and chat.health_status.status == "HEALTHY"
        message = await client.send_message(chat.id, "Still there?")
        assert (message.chat_id, message.is_from_me) == (chat.id, True)
        page = await client.list_messages(chat.id)
        assert [m.is_from_me for m in page.messages] == [True, True]
        created = await client.create_webhook_subscription(URL, ["message.sent"], [LINE])
        assert created.signing_secret.get_secret_value().startswith("whsec_")
        updated = await client.update_webhook_subscription(created.id, phone_numbers=[])
        assert updated.phone_numbers == []
        [listed] = await client.list_webhook_subscriptions()
        assert (listed.id, listed.target_url, listed.subscribed_events) == (
            created.id,
            URL,
            ["message.sent"],
        )
