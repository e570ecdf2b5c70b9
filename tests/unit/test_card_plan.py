"""The pure card plan: desired against observed, within the budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.core.card_budget import WriteBudget, WriteResult
from scheduler.core.card_plan import Action, CardFields, CardPlan, CardView, next_poll, plan_card
from scheduler.core.status import CardState

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=15)
FIRST = timedelta(seconds=2)
MOST = timedelta(minutes=1)
ACME = CardFields("Acme", "Support", "https://example.com/a.png")


def _plan(view: CardView, now: datetime = T0) -> CardPlan:
    return plan_card(view, now, activation_timeout=TIMEOUT, poll_first=FIRST, poll_most=MOST)


def test_a_line_without_a_declared_card_is_only_observed() -> None:
    for state in CardState:
        plan = _plan(CardView(None, ACME, state))
        assert plan.action == Action.observe
        assert not plan.writes


def test_nothing_is_written_before_the_card_was_read() -> None:
    assert _plan(CardView(ACME, None, CardState.unknown)).action == Action.unknown


def test_a_missing_card_is_created_with_every_declared_field() -> None:
    plan = _plan(CardView(ACME, None, CardState.absent))
    assert plan.action == Action.create
    assert plan.fields == {
        "first_name": "Acme",
        "last_name": "Support",
        "image_url": "https://example.com/a.png",
    }
    bare = _plan(CardView(CardFields("Acme"), None, CardState.absent))
    assert bare.fields == {"first_name": "Acme"}


def test_drift_patches_only_the_fields_that_differ() -> None:
    observed = CardFields("Acme", "Sales", "https://example.com/a.png")
    plan = _plan(CardView(ACME, observed, CardState.active))
    assert plan.action == Action.patch
    assert plan.fields == {"last_name": "Support"}


def test_image_url_is_sent_only_when_the_desired_url_differs() -> None:
    same_image = CardFields("Old", "Support", "https://example.com/a.png")
    assert _plan(CardView(ACME, same_image, CardState.active)).fields == {"first_name": "Acme"}
    new_image = CardFields("Acme", "Support", "https://example.com/old.png")
    plan = _plan(CardView(ACME, new_image, CardState.active))
    assert plan.fields == {"image_url": "https://example.com/a.png"}


def test_fields_left_out_of_the_schedule_are_left_as_they_are() -> None:
    observed = CardFields("Acme", "Whatever", "https://example.com/x.png")
    plan = _plan(CardView(CardFields("Acme"), observed, CardState.active))
    assert plan.action == Action.in_sync


def test_an_active_card_as_declared_needs_nothing() -> None:
    plan = _plan(CardView(ACME, ACME, CardState.active))
    assert plan.action == Action.in_sync
    assert plan.at is None


def test_a_pending_card_with_drift_is_never_patched_before_activation() -> None:
    # Linq answers 404/2012 to a PATCH on a card that is not active: the change waits.
    observed = CardFields("Old", "Support", "https://example.com/a.png")
    written = _plan(CardView(ACME, observed, CardState.pending, written_at=T0))
    assert written.action == Action.awaiting_activation and not written.writes
    assert not _plan(CardView(ACME, observed, CardState.pending)).writes
    # Once active, the whole pending change goes out in one PATCH.
    plan = _plan(CardView(ACME, observed, CardState.active))
    assert (plan.action, plan.fields) == (Action.patch, {"first_name": "Acme"})


def test_after_a_write_activation_is_polled_with_backoff_then_given_up() -> None:
    view = CardView(ACME, ACME, CardState.pending, written_at=T0)
    polls = []
    now = T0
    while True:
        plan = _plan(view, now)
        if plan.action != Action.awaiting_activation:
            break
        assert plan.at is not None
        polls.append(plan.at - now)
        now = plan.at
    assert plan.action == Action.activation_timeout
    assert now == T0 + TIMEOUT
    assert polls[0] == FIRST
    assert polls[:5] == [FIRST, FIRST, 2 * FIRST, 4 * FIRST, 8 * FIRST]
    assert max(polls) == MOST
    assert not plan.writes


def test_an_inactive_card_we_did_not_write_is_left_to_linq() -> None:
    plan = _plan(CardView(ACME, ACME, CardState.pending))
    assert plan.action == Action.pending
    assert plan.at is None


def test_a_card_left_inactive_by_failed_writes_is_posted_again_with_every_field() -> None:
    budget = WriteBudget().reserve(T0, MOST).settle(T0, T0, WriteResult.throttled)
    later = budget.next_write_at
    assert later is not None
    view = CardView(ACME, ACME, CardState.pending, budget=budget)
    waiting = _plan(view, T0 + timedelta(minutes=5))
    assert waiting.action == Action.wait_budget
    assert waiting.at == later
    assert waiting.via == Action.create
    plan = _plan(view, later)
    # POST is accepted on a pending card; a PATCH would be refused (404/2012).
    assert plan.action == Action.create
    assert plan.fields == ACME.body()


def test_a_needed_write_waits_for_the_budget() -> None:
    budget = WriteBudget()
    for minute in range(3):
        at = T0 + timedelta(minutes=minute)
        budget = budget.reserve(at, MOST).settle(at, at, WriteResult.ok)
    now = T0 + timedelta(minutes=3)
    plan = _plan(CardView(ACME, None, CardState.absent, budget=budget), now)
    assert plan.action == Action.wait_budget
    assert plan.via == Action.create
    assert plan.at == budget.allowed_at(now)
    assert plan.at > now


def test_a_refused_card_is_blocked_not_retried() -> None:
    budget = WriteBudget().reserve(T0, MOST).settle(T0, T0, WriteResult.rejected)
    plan = _plan(CardView(ACME, None, CardState.absent, budget=budget), T0 + timedelta(days=30))
    assert plan.action == Action.blocked
    assert plan.at is None


def test_next_poll_doubles_from_the_write_and_is_capped() -> None:
    assert next_poll(T0, T0, FIRST, MOST) == T0 + FIRST
    assert next_poll(T0, T0 + timedelta(seconds=10), FIRST, MOST) == T0 + timedelta(seconds=20)
    assert next_poll(T0, T0 + timedelta(hours=1), FIRST, MOST) == T0 + timedelta(hours=1) + MOST
