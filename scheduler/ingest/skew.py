"""How far this host's clock is from the clock that signs Linq's webhooks.

Every correctly signed delivery carries the sender's time (``X-Webhook-Timestamp``, or the
Standard Webhooks ``webhook-timestamp``). Its offset from local time is delivery latency plus
clock skew; the median of recent deliveries is the skew. When the host clock is off by more
than ``webhooks.tolerance`` every delivery is answered 401 as stale while ``/readyz`` stays
200: deliveries rejected as stale but otherwise correctly signed are counted too, so the
metric shows the cause. Pure bookkeeping here; the daemon owns the metric and the log.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

# Recent deliveries the median is taken over: one late or early delivery does not move it.
WINDOW = 31
# Offsets smaller than this are latency and ordinary drift, not worth a log line.
NOTEWORTHY_SECONDS = 30.0


@dataclass(slots=True)
class SkewEstimate:
    """The median offset (local minus sender, seconds) of the last WINDOW deliveries."""

    offsets: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    reported: float = 0.0  # the offset last logged (0: none noteworthy yet)

    def observe(self, sent_unix: float, now_unix: float) -> float:
        """Add one delivery; return the current estimate."""
        self.offsets.append(now_unix - sent_unix)
        # median_low: always one delivery's own offset, never the mean of two halves, so a
        # change of clock shows as one step rather than a walk through values nobody saw.
        return statistics.median_low(self.offsets)

    def changed(self, estimate: float) -> bool:
        """Whether ``estimate`` differs from the last reported one enough to say so again.

        Reported once when the skew becomes noteworthy, again each time it moves by as much,
        and once when it is back under the threshold.
        """
        if abs(estimate - self.reported) < NOTEWORTHY_SECONDS:
            return False
        if abs(estimate) < NOTEWORTHY_SECONDS and abs(self.reported) < NOTEWORTHY_SECONDS:
            return False
        self.reported = estimate if abs(estimate) >= NOTEWORTHY_SECONDS else 0.0
        return True
