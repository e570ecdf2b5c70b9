"""The simulator's account model: activation, budgets, rate limits, opt-outs, pagination."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.sim.model import Event, SimError
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import HEALTH_DOC_URL, SimState, check_limit

LINE = "+14155550100"
OTHER_LINE = "+14155550111"
ALICE = "+14155550199"
BOB = "+14155550198"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class FakeClock:
    """Stands in for scheduler.clock.now (freezegun is far slower to set up per test)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def tick(self, delta: timedelta) -> None:
        self.at += delta


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr("scheduler.clock.now", fake.now)
    return fake


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def state(clock: FakeClock, events: list[Event]) -> SimState:
    return SimState(SimSettings(activation_delay=5, seed=7), events.append)


def raises(status: int, code: int) -> Any:
    class _Matcher:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
            assert isinstance(exc, SimError), f"expected SimError {status}/{code}, got {exc!r}"
            assert (exc.status, exc.code) == (status, code), exc.message
            self.error = exc
            return True

    return _Matcher()


def chat_body(to: list[str] | None = None, service: str = "iMessage") -> dict[str, Any]:
    return {
        "from": LINE,
        "to": to or [ALICE],
        "message": {"parts": [{"type": "text", "value": "hi"}]},
        "service": service,
    }


def active_card(state: SimState, clock: FakeClock, number: str = LINE) -> None:
    state.create_card({"phone_number": number, "first_name": "Acme"})
    clock.tick(timedelta(seconds=5))


# -- cards ---------------------------------------------------------------------------------


def test_card_starts_inactive_and_activates_after_the_delay(
    state: SimState, clock: FakeClock
) -> None:
    card = state.create_card({"phone_number": LINE, "first_name": "Acme", "last_name": "Co"})
    assert card.to_json(T0) == {
        "phone_number": LINE,
        "first_name": "Acme",
        "last_name": "Co",
        "image_url": None,
        "is_active": False,
    }
    clock.tick(timedelta(seconds=4.9))
    # GET retrieves the active cards: a pending one is missing from both reads.
    assert state.get_cards(None) == []
    with raises(404, 2012):
        state.get_cards(LINE)
    clock.tick(timedelta(seconds=0.1))
    assert state.get_cards(LINE)[0].is_active(clock.now())
    assert [c.phone_number for c in state.get_cards(None)] == [LINE]


def test_post_on_a_pending_card_is_accepted_and_a_conflict_once_active(
    state: SimState, clock: FakeClock
) -> None:
    state.create_card({"phone_number": LINE, "first_name": "Acme"})
    state.create_card({"phone_number": LINE, "first_name": "Other"})  # setup continues
    assert state.cards[LINE].first_name == "Other"
    clock.tick(timedelta(seconds=5))
    with raises(409, 2014):
        state.create_card({"phone_number": LINE, "first_name": "Third"})
    assert state.cards[LINE].first_name == "Other"


def test_patch_on_a_card_that_is_not_active_is_2012(state: SimState, clock: FakeClock) -> None:
    state.create_card({"phone_number": LINE, "first_name": "Acme"})
    with raises(404, 2012):
        state.update_card(LINE, {"first_name": "Other"})
    clock.tick(timedelta(seconds=5))
    state.update_card(LINE, {"first_name": "Other"})
    # Briefly not active again while the change is applied (the refused PATCH spent a slot).
    assert not state.cards[LINE].is_active(clock.now())
    assert len(state.card_writes[LINE]) == 3


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phone_number": "4155550100", "first_name": "A"}, 400, 1002),
        ({"phone_number": "+1 415 555 0100", "first_name": "A"}, 400, 1002),
        ({"phone_number": LINE}, 400, 1003),
        ({"phone_number": LINE, "first_name": "  "}, 400, 1003),
        ({"first_name": "A"}, 400, 1003),
        ({"phone_number": LINE, "first_name": "A", "last_name": 5}, 400, 1001),
    ],
)
def test_card_validation(state: SimState, body: dict[str, Any], status: int, code: int) -> None:
    with raises(status, code):
        state.create_card(body)
    assert state.cards == {}


def test_patch_keeps_omitted_fields_and_reapplies_the_card(
    state: SimState, clock: FakeClock, events: list[Event]
) -> None:
    state.create_card({"phone_number": LINE, "first_name": "Acme", "image_url": "https://x/a.png"})
    clock.tick(timedelta(seconds=10))
    assert state.cards[LINE].is_active(clock.now())
    card = state.update_card(LINE, {"last_name": "Inc"})
    at = clock.now()
    assert card.to_json(at) == {
        "phone_number": LINE,
        "first_name": "Acme",
        "last_name": "Inc",
        "image_url": "https://x/a.png",
        "is_active": False,
    }
    assert [e.event_type for e in events] == ["contact_card.created", "contact_card.updated"]
    assert events[1].data["change"] == {"last_name": {"from": None, "to": "Inc"}}
    assert events[1].data["contact_card"]["last_name"] == "Inc"
    assert events[1].data["phone_number"] == LINE
    clock.tick(timedelta(seconds=5))
    assert state.cards[LINE].is_active(clock.now())


def test_patch_without_a_card_is_2012(state: SimState) -> None:
    with raises(404, 2012):
        state.update_card(LINE, {"first_name": "Acme"})


def test_get_one_missing_card_is_2012_and_all_cards_lists_them(
    state: SimState, clock: FakeClock
) -> None:
    with raises(404, 2012):
        state.get_cards(LINE)
    state.create_card({"phone_number": LINE, "first_name": "A"})
    state.create_card({"phone_number": OTHER_LINE, "first_name": "B"})
    clock.tick(timedelta(seconds=5))
    assert [c.phone_number for c in state.get_cards(None)] == [LINE, OTHER_LINE]


def test_card_write_budget_is_three_per_ten_minutes(state: SimState, clock: FakeClock) -> None:
    state.create_card({"phone_number": LINE, "first_name": "A"})
    clock.tick(timedelta(minutes=1))
    state.update_card(LINE, {"first_name": "B"})
    clock.tick(timedelta(minutes=1))
    state.update_card(LINE, {"first_name": "C"})
    clock.tick(timedelta(minutes=1))
    limited = raises(429, 1007)
    with limited:
        state.update_card(LINE, {"first_name": "D"})
    # The oldest write (at T0) frees its slot at T0 + 10 min; it is now T0 + 3 min.
    assert limited.error.retry_after == pytest.approx(7 * 60)
    assert state.cards[LINE].first_name == "C"
    # Another number has its own budget.
    state.create_card({"phone_number": OTHER_LINE, "first_name": "X"})
    clock.tick(timedelta(minutes=7))
    state.update_card(LINE, {"first_name": "D"})
    assert state.cards[LINE].first_name == "D"


def test_refused_writes_count_against_the_budget_but_429s_do_not(
    state: SimState, clock: FakeClock
) -> None:
    for _ in range(3):
        with raises(404, 2012):
            state.update_card(LINE, {"first_name": "A"})
    with raises(429, 1007):
        state.create_card({"phone_number": LINE, "first_name": "A"})
    clock.tick(timedelta(minutes=10))
    state.create_card({"phone_number": LINE, "first_name": "A"})
    assert LINE in state.cards


def test_4004_leaves_the_card_inactive_until_the_next_good_write(
    state: SimState, clock: FakeClock
) -> None:
    state.settings.card_4004_next = 1
    with raises(503, 4004):
        state.create_card({"phone_number": LINE, "first_name": "A"})
    assert state.settings.card_4004_next == 0
    clock.tick(timedelta(hours=1))
    assert not state.cards[LINE].is_active(clock.now())
    with raises(404, 2012):
        state.update_card(LINE, {})  # not active: nothing to PATCH
    state.create_card({"phone_number": LINE, "first_name": "A"})  # accepted while pending
    clock.tick(timedelta(seconds=5))
    assert state.cards[LINE].is_active(clock.now())


def test_2022_leaves_everything_as_it_was(state: SimState, clock: FakeClock) -> None:
    state.settings.card_2022_next = 2
    with raises(500, 2022):
        state.create_card({"phone_number": LINE, "first_name": "A"})
    assert LINE not in state.cards
    state.settings.card_2022_next = 0
    active_card(state, clock)
    state.settings.card_2022_next = 1
    with raises(500, 2022):
        state.update_card(LINE, {"first_name": "B"})
    assert state.cards[LINE].first_name == "Acme"
    assert state.cards[LINE].is_active(clock.now())


def test_numbers_outside_the_account_are_denied(clock: FakeClock) -> None:
    state = SimState(SimSettings(lines=[LINE]))
    with raises(403, 2005):
        state.create_card({"phone_number": OTHER_LINE, "first_name": "A"})
    with raises(403, 2005):
        state.create_chat({**chat_body(), "from": OTHER_LINE})
    with raises(403, 2005):
        state.list_chats(OTHER_LINE, 20, None)
    state.create_card({"phone_number": LINE, "first_name": "A"})
    # A chat of a number the account lost (seeded behind the API's back) cannot be shared.
    [chat_id] = state.seed(OTHER_LINE, 1)
    with raises(403, 2005):
        state.share(chat_id)


# -- chats and messages --------------------------------------------------------------------


def test_create_chat_sends_its_first_message_and_events(
    state: SimState, events: list[Event]
) -> None:
    chat, message = state.create_chat(chat_body(), "trace-1")
    body = state.chat_json(chat)
    assert body["is_group"] is False
    assert body["service"] == "iMessage"
    assert [(h["handle"], h["is_me"]) for h in body["handles"]] == [(LINE, True), (ALICE, False)]
    assert body["health_status"] == {
        "status": "HEALTHY",
        "updated_at": "2026-03-02T15:00:00.000Z",
        "doc_url": HEALTH_DOC_URL + "healthy",
    }
    assert message.to_json()["is_from_me"] is True
    assert message.to_json()["from"] == LINE
    assert [e.event_type for e in events] == ["chat.created", "message.sent", "message.delivered"]
    sent = events[1].data
    assert sent["direction"] == "outbound"
    assert sent["id"] == message.id
    assert sent["chat"]["owner_handle"]["is_me"] is True
    assert sent["delivered_at"] is None
    assert events[2].data["delivered_at"] == sent["sent_at"]
    assert {e.trace_id for e in events} == {"trace-1"}
    assert len({e.event_id for e in events}) == 3


def test_same_recipients_reuse_the_chat_and_groups_are_groups(state: SimState) -> None:
    first, _ = state.create_chat(chat_body())
    again, _ = state.create_chat(chat_body())
    sms, _ = state.create_chat(chat_body(service="SMS"))
    group, _ = state.create_chat(chat_body([ALICE, BOB]))
    assert again.id == first.id
    assert len(first.messages) == 2
    assert sms.id != first.id
    assert sms.service == "SMS"
    assert group.is_group is True


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"from": "14155550100"}, 1002),
        ({"to": []}, 1003),
        ({"to": ["not a handle"]}, 1002),
        ({"to": [ALICE, ALICE]}, 1001),
        ({"message": {"parts": []}}, 1003),
        ({"message": {"parts": [{"type": "image", "value": "x"}]}}, 1005),
        ({"service": "Fax"}, 1005),
    ],
)
def test_chat_validation(state: SimState, change: dict[str, Any], code: int) -> None:
    with raises(400, code):
        state.create_chat({**chat_body(), **change})
    assert state.chats == {}


def test_stop_opts_out_and_any_other_text_opts_back_in(
    state: SimState, clock: FakeClock, events: list[Event]
) -> None:
    chat, _ = state.create_chat(chat_body())
    clock.tick(timedelta(minutes=1))
    state.receive_message(chat.id, "  stop ")
    assert state.chat_json(chat)["health_status"] == {
        "status": "OPTED_OUT",
        "updated_at": "2026-03-02T15:01:00.000Z",
        "doc_url": HEALTH_DOC_URL + "opted-out",
    }
    assert events[-1].event_type == "message.received"
    assert events[-1].data["direction"] == "inbound"
    assert events[-1].data["sender_handle"]["handle"] == ALICE
    with raises(403, 2024):
        state.send_message(chat.id, {"message": {"parts": [{"type": "text", "value": "x"}]}})
    with raises(403, 2024):
        state.create_chat(chat_body(service="SMS"))
    state.receive_message(chat.id, "ok, hi again")
    assert state.chat_json(chat)["health_status"]["status"] == "HEALTHY"
    state.send_message(chat.id, {"message": {"parts": [{"type": "text", "value": "x"}]}})
    assert [m.is_from_me for m in chat.messages] == [True, False, False, True]


def test_inbound_from_a_stranger_is_refused(state: SimState) -> None:
    chat, _ = state.create_chat(chat_body())
    with raises(400, 1001):
        state.receive_message(chat.id, "hi", sender=BOB)
    with raises(404, 2001):
        state.receive_message("nope", "hi")


def test_chats_page_in_creation_order_per_line(state: SimState) -> None:
    ids = [state.create_chat(chat_body([f"+1415555{i:04d}"]))[0].id for i in range(5)]
    state.create_chat({**chat_body(), "from": OTHER_LINE})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = state.list_chats(LINE, 2, cursor)
        seen += [c.id for c in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3
    assert len(state.list_chats(None, 100, None).items) == 6


def test_an_exact_last_page_has_no_next_cursor(state: SimState) -> None:
    for i in range(4):
        state.create_chat(chat_body([f"+1415555{i:04d}"]))
    first = state.list_chats(None, 2, None)
    second = state.list_chats(None, 2, first.next_cursor)
    assert len(second.items) == 2
    assert second.next_cursor is None


def test_messages_page_and_cursors_are_checked(state: SimState) -> None:
    chat, _ = state.create_chat(chat_body())
    for n in range(4):
        state.send_message(chat.id, {"message": {"parts": [{"type": "text", "value": str(n)}]}})
    page = state.list_messages(chat.id, 3, None)
    rest = state.list_messages(chat.id, 3, page.next_cursor)
    texts = [m.parts[0]["value"] for m in [*page.items, *rest.items]]
    assert texts == ["hi", "0", "1", "2", "3"]
    assert rest.next_cursor is None
    with raises(400, 1001):
        state.list_messages(chat.id, 3, "garbage!")
    with raises(400, 1001):
        state.list_chats(None, 3, page.next_cursor)  # a messages cursor is not a chats cursor
    with raises(404, 2001):
        state.list_messages("missing", 3, None)


@pytest.mark.parametrize("raw", ["0", "101", "abc", "-1", "2.5"])
def test_bad_limits_are_1001(raw: str) -> None:
    with raises(400, 1001):
        check_limit(raw)


def test_limit_defaults_to_20_and_accepts_100() -> None:
    assert check_limit(None) == 20
    assert check_limit("100") == 100


# -- sharing -------------------------------------------------------------------------------


def test_share_needs_a_known_chat_and_an_active_card(state: SimState, clock: FakeClock) -> None:
    chat, _ = state.create_chat(chat_body())
    with raises(404, 2001):
        state.share("missing")
    with raises(404, 2012):
        state.share(chat.id)
    state.create_card({"phone_number": LINE, "first_name": "A"})
    with raises(404, 2012):
        state.share(chat.id)
    clock.tick(timedelta(seconds=5))
    share = state.share(chat.id)
    assert share.to_json() == {
        "chat_id": chat.id,
        "from": LINE,
        "service": "iMessage",
        "effective": True,
        "at": "2026-03-02T15:00:05.000Z",
    }
    assert state.shares_by_chat[chat.id] == [share]


def test_share_is_limited_to_once_per_chat_per_five_minutes(
    state: SimState, clock: FakeClock
) -> None:
    active_card(state, clock)
    chat, _ = state.create_chat(chat_body())
    other, _ = state.create_chat(chat_body([BOB]))
    state.share(chat.id)
    clock.tick(timedelta(minutes=4))
    limited = raises(429, 1007)
    with limited:
        state.share(chat.id)
    assert limited.error.retry_after == pytest.approx(60)
    state.share(other.id)
    clock.tick(timedelta(minutes=1))
    state.share(chat.id)
    assert len(state.shares_by_chat[chat.id]) == 2


def test_share_refuses_opted_out_and_silent_chats(state: SimState, clock: FakeClock) -> None:
    active_card(state, clock)
    [silent] = state.seed(LINE, 1, outbound=False)
    with raises(400, 1004):
        state.share(silent)
    chat, _ = state.create_chat(chat_body())
    state.receive_message(chat.id, "UNSUBSCRIBE")
    with raises(403, 2024):
        state.share(chat.id)
    assert state.shares == []


def test_sms_shares_are_answered_and_flagged(state: SimState, clock: FakeClock) -> None:
    active_card(state, clock)
    chat, _ = state.create_chat(chat_body(service="SMS"))
    share = state.share(chat.id)
    assert share.to_json()["effective"] is False


def test_share_faults_follow_the_knobs(state: SimState) -> None:
    assert state.share_fault() is None
    state.settings.reset_rate = 1.0
    assert state.share_fault() == "reset"
    state.settings.reset_rate = 0.0
    state.settings.share_fault_rate = 1.0
    with raises(500, 3006):
        state.share_fault()
    state.settings.share_fault_rate = 0.0
    state.settings.share_429_rate = 1.0
    state.settings.retry_after = 12
    limited = raises(429, 1007)
    with limited:
        state.share_fault()
    assert limited.error.retry_after == 12
    assert limited.error.fault == "share_429"
    state.settings.share_429_rate = 0.0
    state.settings.timeout_rate = 1.0
    assert state.share_fault() == "timeout"


def test_fault_draws_repeat_with_the_seed(clock: FakeClock) -> None:
    def draws() -> list[str | None]:
        state = SimState(SimSettings(reset_rate=0.3, timeout_rate=0.3, seed=42))
        return [state.share_fault() for _ in range(50)]

    first = draws()
    assert first == draws()
    assert {"reset", "timeout", None} <= set(first)


# -- seeding -------------------------------------------------------------------------------


def test_seed_spaces_chats_from_a_start_time_without_events(
    state: SimState, events: list[Event]
) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ids = state.seed(LINE, 3, start=start, spacing=timedelta(minutes=1), is_group=True)
    chats = [state.chats[i] for i in ids]
    assert [c.created_at for c in chats] == [start + timedelta(minutes=m) for m in range(3)]
    assert all(c.is_group and c.has_outbound for c in chats)
    handles = [h.handle for c in chats for h in c.recipients]
    assert len(set(handles)) == 6
    assert events == []
    state.seed(LINE, 1, webhooks=True)
    assert [e.event_type for e in events] == ["chat.created", "message.sent", "message.delivered"]


def test_seed_of_100k_chats_is_fast() -> None:
    state = SimState(SimSettings())
    started = time.perf_counter()
    ids = state.seed(LINE, 100_000)
    elapsed = time.perf_counter() - started
    assert len(set(ids)) == 100_000
    assert state.list_chats(LINE, 100, None).next_cursor is not None
    # About a second on a quiet machine; the bound catches per-chat costs that grow with size.
    assert elapsed < 15.0, f"seeding took {elapsed:.1f}s"


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"share_fault_rate": 1.5},
        {"reset_rate": -0.1},
        {"lines": ["+1415"]},
        {"activation_delay": -1},
        {"card_4004_next": -1},
        {"token": ""},
    ],
)
def test_settings_reject_bad_knobs(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)) if "lines" not in kwargs else "E.164"):
        SimSettings(**kwargs)


def test_settings_update_is_all_or_nothing() -> None:
    settings = SimSettings()
    with pytest.raises(ValueError, match="share_429_rate"):
        settings.update({"share_fault_rate": 0.5, "share_429_rate": 2})
    assert settings.share_fault_rate == 0.0
    with pytest.raises(ValueError, match="seed"):
        settings.update({"seed": 3})
    settings.update({"share_fault_rate": 0.5, "lines": [LINE]})
    assert settings.share_fault_rate == 0.5
    assert settings.lines == [LINE]
    assert "token" not in settings.knobs()
