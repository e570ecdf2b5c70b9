"""systemd's notify protocol (``Type=notify``): READY, the watchdog, STOPPING.

Under systemd ``NOTIFY_SOCKET`` is set and the daemon says ``READY=1`` once it serves HTTP and
its scheduler runs, so ``systemctl start`` returns when it is really up. With ``WatchdogSec=``
systemd also sets ``WATCHDOG_USEC``: ``WATCHDOG=1`` is sent from the event loop at half that
period, so a stuck loop (not just a dead process) misses its pings and gets restarted.
``STOPPING=1`` is sent when shutdown begins. Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import sdnotify
import structlog

log = structlog.get_logger("scheduler.notify")

# How often to look whether the HTTP server has started before READY=1.
_STARTED_POLL = 0.05


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, or None when not asked."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    # systemd names the process the watchdog is meant for; a child must not answer for it.
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


class SystemdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.interval = watchdog_interval(env) if self.enabled else None
        # sdnotify reads NOTIFY_SOCKET itself and ignores send errors (systemd gone).
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        if self._sd is not None and self._sd.socket is not None:
            # Never block the event loop: a full receive queue drops the message instead.
            self._sd.socket.setblocking(False)

    def send(self, state: str) -> None:
        if self._sd is not None:
            self._sd.notify(state)

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    async def run(self, serving: Callable[[], bool], stop: asyncio.Event) -> None:
        """READY=1 once ``serving()`` is true, then WATCHDOG=1 every interval until ``stop``."""
        if not self.enabled:
            return
        while not serving():
            if stop.is_set():
                return
            await asyncio.sleep(_STARTED_POLL)
        self.send(f"READY=1\nSTATUS=serving\nMAINPID={os.getpid()}")
        log.info("systemd.ready", watchdog_seconds=self.interval)
        if self.interval is None:
            return
        while not stop.is_set():
            self.send("WATCHDOG=1")
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                continue
