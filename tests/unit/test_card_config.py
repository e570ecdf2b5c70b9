"""The ``cards:`` keys of the schedule file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler.config import parse_schedule
from scheduler.errors import ConfigError


def test_card_keys_have_defaults_and_read_durations() -> None:
    default = parse_schedule({}, "s.yaml").cards
    assert default.activation_timeout == timedelta(minutes=15)
    assert default.activation_poll == timedelta(seconds=2)
    assert default.retry_wait == timedelta(minutes=1)
    cards = parse_schedule(
        {"cards": {"activation_timeout": "30m", "activation_poll": "500ms", "retry_wait": 90}},
        "s.yaml",
    ).cards
    assert cards.activation_timeout == timedelta(minutes=30)
    assert cards.activation_poll == timedelta(milliseconds=500)
    assert cards.retry_wait == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("cards", "problem"),
    [
        ({"activation_timeout": "0s"}, "cards.activation_timeout: must be greater than zero"),
        ({"retry_wait": "soon"}, "cards.retry_wait: expected a duration"),
        ({"poll_every": "1s"}, "cards.poll_every: unknown key"),
    ],
)
def test_bad_card_keys_are_named(cards: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_schedule({"cards": cards}, "s.yaml")
    assert any(str(p).startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_declared_card_needs_a_first_name() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_schedule({"lines": [{"number": "+14155550100", "card": {}}]}, "s.yaml")
    assert [str(p) for p in caught.value.problems] == ["lines.0.card.first_name: Field required"]
