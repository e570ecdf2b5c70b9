"""The simulator's group membership and its participant.* events."""

from __future__ import annotations

import pytest

from scheduler.ingest.events import parse_event
from scheduler.sim.model import Event, SimError
from scheduler.sim.participants import add_participant, remove_participant
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import SimState
from scheduler.sim.webhooks import envelope
from tests.unit.test_sim_state import chat_body

LINE = "+14155550100"
ALICE = "+12125550199"
BOB = "+12125550198"
CAROL = "+12125550197"


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def state(events: list[Event]) -> SimState:
    return SimState(SimSettings(activation_delay=0), events.append)


def _code(exc: pytest.ExceptionInfo[SimError]) -> tuple[int, int]:
    return exc.value.status, exc.value.code


def test_members_come_and_go_with_their_events(state: SimState, events: list[Event]) -> None:
    group, _ = state.create_chat({**chat_body(), "to": [ALICE, BOB]})
    events.clear()
    add_participant(state, group.id, CAROL, "t")
    remove_participant(state, group.id, ALICE, "t")
    assert [h.handle for h in group.recipients] == [BOB, CAROL]
    assert [e.event_type for e in events] == ["participant.added", "participant.removed"]
    assert events[0].data["participant"]["handle"] == CAROL
    assert events[1].data["chat_id"] == group.id
    # The daemon reads them as membership changes of that chat.
    added = parse_event(envelope(events[0], "p")).activity
    removed = parse_event(envelope(events[1], "p")).activity
    assert added is not None and added.recipients == (CAROL,) and added.is_group is True
    assert removed is not None and removed.removed_recipients == (ALICE,)


def test_membership_rules(state: SimState) -> None:
    one, _ = state.create_chat(chat_body())
    with pytest.raises(SimError) as info:
        add_participant(state, one.id, CAROL)
    assert _code(info) == (400, 1001)
    group, _ = state.create_chat({**chat_body(), "to": [ALICE, BOB]})
    with pytest.raises(SimError) as info:
        add_participant(state, group.id, ALICE)
    assert _code(info) == (400, 1001)
    with pytest.raises(SimError) as info:
        remove_participant(state, group.id, CAROL)
    assert _code(info) == (400, 1001)
    with pytest.raises(SimError) as info:
        remove_participant(state, group.id, ALICE)  # two others at least
    assert _code(info) == (400, 1001)
    with pytest.raises(SimError) as info:
        add_participant(state, "missing", CAROL)
    assert _code(info) == (404, 2001)
