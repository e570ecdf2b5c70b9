"""docs/configuration.md is what the config models generate, and documents every key."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from scheduler.config import Schedule
from scheduler.config_reference import render_reference

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key that holds a value, with its dotted path (``lines[].card.first_name``)."""
    found = []
    for name, field in model.model_fields.items():
        assert field.description, f"{prefix}{name} has no Field(description=...)"
        nested = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            for t in (t, *typing.get_args(t))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if nested:
            many = typing.get_origin(field.annotation) is list
            found += _leaf_keys(nested[0], f"{prefix}{name}{'[]' if many else ''}.")
        else:
            found.append(f"{prefix}{name}")
    return found


def test_committed_reference_is_generated() -> None:
    assert PAGE.read_text() == render_reference(), (
        "docs/configuration.md is stale: run "
        "`share-scheduler config reference -o docs/configuration.md`"
    )


def test_every_key_has_a_description_and_a_row() -> None:
    text = render_reference()
    keys = _leaf_keys(Schedule)
    assert len(keys) >= 58
    for key in keys:
        assert f"| `{key}` |" in text, key
    assert "| `share_pass.requests_per_second` | number (> 0) | `20.0` |" in text
    assert "| `webhooks.event_retention` | duration | `7d` |" in text
    assert "| `lines[].number` | E.164 phone number (quoted) | (required) |" in text
    assert "| `lines[].card.first_name` |" in text


def test_cli_prints_the_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler", "config", "reference"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout == render_reference()
