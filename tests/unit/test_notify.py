"""systemd notify: when the watchdog is asked for, and that a stuck event loop stops pinging."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.notify import SystemdNotifier, watchdog_interval


def test_watchdog_interval_is_half_the_period_for_this_process_only() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, pid=42) == 1.0
    # Meant for another process (a child inherits the environment): not ours to answer.
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}, pid=43) is None


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "1000000"})
    assert (notifier.enabled, notifier.interval) == (False, None)
    notifier.stopping()  # no socket: a no-op, no error


@pytest.fixture
def receiver() -> Iterator[tuple[Path, list[tuple[float, str]]]]:
    """A bound datagram socket, read by a thread that notes when each message arrived."""
    path = Path(f"/tmp/ss-unit-notify-{os.getpid()}.sock")
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    arrivals: list[tuple[float, str]] = []
    done = threading.Event()

    def _read() -> None:
        while not done.is_set():
            try:
                arrivals.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                continue

    thread = threading.Thread(target=_read, daemon=True)
    thread.start()
    try:
        yield path, arrivals
    finally:
        done.set()
        thread.join(5)
        sock.close()
        path.unlink(missing_ok=True)


async def test_a_blocked_event_loop_misses_its_watchdog_pings(
    receiver: tuple[Path, list[tuple[float, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, arrivals = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    assert notifier.interval == 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(lambda: True, stop))
    await asyncio.sleep(0.3)
    time.sleep(0.6)  # the loop is stuck: no ping may go out meanwhile
    await asyncio.sleep(0.3)
    stop.set()
    await task
    time.sleep(0.2)
    assert arrivals[0][1].startswith("READY=1")
    pings = [at for at, text in arrivals if text == "WATCHDOG=1"]
    assert len(pings) >= 4
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # systemd would see this silence and restart the service.
    assert max(gaps) >= 0.5, gaps


def test_a_full_notify_queue_never_blocks_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(f"/tmp/ss-unit-full-{os.getpid()}.sock")
    path.unlink(missing_ok=True)
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))  # never read: its queue fills after a few hundred messages
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})

        def _flood() -> None:
            for _ in range(5000):
                notifier.send("WATCHDOG=1")

        sender = threading.Thread(target=_flood, daemon=True)
        sender.start()
        sender.join(20)
        # Before the fix the sender blocked forever on the full queue (and so would the loop).
        assert not sender.is_alive(), "send() blocked on a notify socket nobody reads"
    finally:
        deaf.close()
        path.unlink(missing_ok=True)
