"""A global requests-per-second limit for Linq calls, shared by all workers of a pass."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Spaces calls at least 1/rate seconds apart, with a small burst allowance."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.burst = max(1, burst)
        self._next = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        # Unused capacity accrues only up to the burst size.
        slot = max(self._next, now - self.interval * (self.burst - 1))
        self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            await asyncio.sleep(delay)
