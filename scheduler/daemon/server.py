"""The HTTP side of the daemon (webhooks, health, metrics): its socket, limits, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from typing import Any

from scheduler.config import Schedule
from scheduler.errors import ListenFailed
from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.http.server import Server, ServerLimits, build_server


class HttpSide:
    """The server on a socket bound beforehand (see :func:`listen_socket`)."""

    def __init__(self, runtime: Runtime, schedule: Schedule, listener: socket.socket) -> None:
        cfg = schedule.webhooks
        self.server: Server = build_server(
            create_app(runtime), cfg.host, cfg.port, server_limits(schedule)
        )
        self.listener = listener
        self.task: asyncio.Task[Any] | None = None

    def start(self) -> asyncio.Task[Any]:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.listener]), name="http")
        return self.task

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)


def server_limits(schedule: Schedule) -> ServerLimits:
    cfg = schedule.http
    return ServerLimits(
        max_header_bytes=cfg.max_header_bytes,
        max_headers=cfg.max_headers,
        header_timeout=cfg.header_timeout.total_seconds(),
        body_timeout=cfg.body_timeout.total_seconds(),
        keep_alive=cfg.keep_alive.total_seconds(),
        max_connections=cfg.max_connections,
        max_requests_in_flight=cfg.max_requests_in_flight,
    )


def listen_socket(host: str, port: int, listen: str) -> socket.socket:
    """The webhook server's listening socket, bound now; ListenFailed (one line) if it cannot."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenFailed(f"webhooks.listen {listen}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another process listens there)"
        raise ListenFailed(f"webhooks.listen {listen}: {reason}") from exc
    sock.set_inheritable(True)
    return sock
