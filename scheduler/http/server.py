"""The daemon's HTTP server: uvicorn with bounds on what a client may make it hold.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but, with its httptools
parser, nothing else: a request head may grow without limit (a 64 MiB header froze the event
loop for tens of seconds), a client that sends a byte a minute holds its connection forever,
and idle connections pile up until file descriptors run out. ``limit_concurrency`` would
answer 503 past a count of connections, ``/healthz`` included, so an idle flood would fail the
liveness probe and get the daemon killed.

:class:`GuardedProtocol` adds, per connection: a byte and count limit on the request head
(431), a deadline for the head (408) and one for the body (the connection is closed: the
handler sees a disconnect), and a cap on open connections that evicts the oldest connection
still waiting for its first byte. :class:`InFlightLimit` answers 503 past a number of requests
being handled, except ``/livez`` and ``/healthz``. Everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scheduler.http.webhooks import Receive, Scope, Send

log = structlog.get_logger("scheduler.http")

# Paths that answer whatever the load: the liveness probe must not fail because of it.
ALWAYS_SERVED = frozenset({"/livez", "/healthz"})


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = 1000
    max_requests_in_flight: int = 256


def _plain_response(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: "
        + str(len(message)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + message
    )


_TOO_LARGE = _plain_response(b"431 Request Header Fields Too Large", b"request head too large")
_TIMEOUT = _plain_response(b"408 Request Timeout", b"request head not received in time")
_BUSY_JSON = b'{"ok":false,"error":"busy, retry in a second"}'
_BUSY = _plain_response(b"503 Service Unavailable", b"too many connections")


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, read deadlines and a connection cap."""

    limits = ServerLimits()
    # Connections that have not sent a byte yet, oldest first (dicts keep insertion order).
    silent: ClassVar[dict[GuardedProtocol, None]] = {}
    # The request head being read: whether one is, its bytes and lines so far.
    _in_head: bool
    _head_bytes: int
    _head_lines: int
    _tail: bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()
        self._received_any = False
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout, self._head_timed_out)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()
        if not transport.is_closing():
            self.silent[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.silent.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._received_any:
            self._received_any = True
            self.silent.pop(self, None)
        if self._in_head:
            if self._deadline is None:  # the next request on a kept-alive connection
                self._arm(self.limits.header_timeout, self._head_timed_out)
            # Counted before parsing: httptools buffers a head until it is complete. Only the
            # bytes up to the blank line are head; the rest is body.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            head = data if end < 0 else data[: max(0, end + 4 - len(self._tail))]
            self._tail = window[-3:]
            self._head_bytes += len(head)
            self._head_lines += head.count(b"\n")
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(_TOO_LARGE, "head_too_large")
                return
            # The request line, the headers and the blank line: a line each.
            if self._head_lines > self.limits.max_headers + 2:
                self._refuse(_TOO_LARGE, "too_many_headers")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._expect_head()
        super().on_message_complete()

    def _expect_head(self) -> None:
        """The next bytes start a request head: count it from zero."""
        self._in_head = True
        self._head_bytes = 0
        self._head_lines = 0
        # The last bytes seen, so a blank line split across two reads is still found.
        self._tail = b""

    # -- deadlines and refusals ------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._received_any and self._head_bytes:
            self._refuse(_TIMEOUT, "head_timeout")
        else:
            self.transport.close()  # connected and silent: nothing to answer

    def _body_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.warning("http.refused", reason="body_timeout", client=_client(self.client))
            # The handler waiting for the body sees a disconnect and gives up.
            self.transport.close()

    def _refuse(self, answer: bytes, reason: str) -> None:
        if self.transport.is_closing():
            return
        log.warning("http.refused", reason=reason, client=_client(self.client))
        self._disarm()
        self.transport.write(answer)
        self.transport.close()

    def _make_room(self) -> None:
        """Past the cap: close the oldest connection still silent, or refuse this one."""
        oldest = next(iter(self.silent), None)
        if oldest is not None:
            del self.silent[oldest]
            oldest._disarm()
            oldest.transport.close()
            return
        self._refuse(_BUSY, "too_many_connections")


def _client(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


class InFlightLimit:
    """503 past ``limit`` requests handled at once; ``/livez`` and ``/healthz`` always answer."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in ALWAYS_SERVED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"1"),
                        (b"content-length", str(len(_BUSY_JSON)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _BUSY_JSON})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_server(app: Any, host: str, port: int, limits: ServerLimits) -> Server:
    protocol = type("GuardedProtocol", (GuardedProtocol,), {"limits": limits, "silent": {}})
    config = uvicorn.Config(
        InFlightLimit(app, limits.max_requests_in_flight),
        host=host,
        port=port,
        http=protocol,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=max(1, round(limits.keep_alive)),
    )
    return Server(config)
