"""What a simulator instance is told at start, and what tests may change while it runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from scheduler.config import E164
from scheduler.ingest.signing import standard_webhook
from scheduler.validate import STANDARD_PREFIX

# Knobs that POST /_sim/faults may change on a running simulator.
RATE_KNOBS = frozenset(
    {"share_fault_rate", "share_429_rate", "timeout_rate", "reset_rate", "global_429_rate"}
)
# Seconds, except latency_ms.
DURATION_KNOBS = frozenset({"retry_after", "timeout_hold", "activation_delay", "latency_ms"})
COUNT_KNOBS = frozenset({"card_4004_next", "card_2022_next"})
MUTABLE_KNOBS = RATE_KNOBS | DURATION_KNOBS | COUNT_KNOBS | {"token", "lines"}


@dataclass
class SimSettings:
    token: str = "sim-token"  # noqa: S105 - the simulator's well-known default
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # None: every E.164 number belongs to the account. Otherwise other numbers get 403/2005.
    lines: list[str] | None = None
    activation_delay: float = 5.0
    latency_ms: float = 0.0
    share_fault_rate: float = 0.0
    share_429_rate: float = 0.0
    retry_after: float = 30.0
    timeout_rate: float = 0.0
    timeout_hold: float = 30.0
    reset_rate: float = 0.0
    global_429_rate: float = 0.0
    card_4004_next: int = 0
    card_2022_next: int = 0
    seed: int | None = None
    webhook_max_attempts: int = 10
    # Real Linq spreads retries over ~25 minutes; tests cannot wait that long.
    webhook_backoff: float = 0.2
    webhook_backoff_max: float = 5.0
    webhook_timeout: float = 5.0
    webhook_workers: int = 8
    partner_id: str = "sim-partner"
    subscription_id: str = "sim-subscription"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad knob."""
        for name in RATE_KNOBS:
            value = getattr(self, name)
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if not is_number or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in DURATION_KNOBS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in COUNT_KNOBS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if not self.token:
            raise ValueError("token must not be empty")
        if self.lines is not None:
            for number in self.lines:
                if not isinstance(number, str) or not E164.match(number):
                    raise ValueError(f"{number!r} is not an E.164 phone number")
        if self.webhook_secret is not None and self.webhook_secret.startswith(STANDARD_PREFIX):
            try:
                standard_webhook(self.webhook_secret)
            except ValueError as exc:
                raise ValueError(f"webhook_secret: {exc}") from exc
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        if self.webhook_workers < 1:
            raise ValueError("webhook_workers must be at least 1")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update of the mutable knobs, all or nothing."""
        unknown = set(changes) - MUTABLE_KNOBS
        if unknown:
            raise ValueError(f"unknown or read-only knob(s): {', '.join(sorted(unknown))}")
        previous = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, list(value) if name == "lines" and value is not None else value)
        try:
            self.validate()
        except ValueError:
            for name, value in previous.items():
                setattr(self, name, value)
            raise

    def knobs(self) -> dict[str, Any]:
        """The mutable knobs, for GET /_sim/state (the token is not shown)."""
        shown = MUTABLE_KNOBS - {"token"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in shown}
