"""The client's HTTP transport: httpcore's connection pool on asyncio's own streams.

httpx's transport runs httpcore over AnyIO, which opens a cancel scope around every read and
write of every request and asks sniffio which event loop runs it, again and again: on a pass
at zero latency that bookkeeping was most of the cost of a share call (``python -m
bench.share_pass``: the daemon's client alone went from 0.30 to 0.20 ms per call with this
module). httpcore lets its caller choose the network layer (``network_backend``); this
one is asyncio's streams (``asyncio.open_connection``, ``StreamWriter.start_tls``) with
``asyncio.timeout`` for the timeouts. httpcore still speaks HTTP/1.1 (h11), keeps the
connections alive and pools them.

The client sends through a *lane* (:class:`Lane`): a request as bytes, its answer read whole
(:class:`Reply`). :class:`PooledLane` is the lane of every real client: one httpcore pool
for the API's origin, with no httpx request or response objects built per call (their URL
parsing and wrapping were another quarter of a call's CPU). :class:`HttpxLane` puts an httpx
transport behind the same interface, for tests that answer with ``httpx.MockTransport``.
"""

# ruff: noqa: ASYNC109 -- httpcore's network interface takes its timeouts as parameters.
from __future__ import annotations

import asyncio
import json
import select
import socket
import ssl
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

__all__ = [
    "KEEPALIVE_EXPIRY",
    "AsyncioBackend",
    "HttpxLane",
    "Lane",
    "Outgoing",
    "PooledLane",
    "Reply",
]

# Seconds an idle connection is kept for the next request (httpx's default): servers and
# load balancers drop idle connections, silently at times.
KEEPALIVE_EXPIRY = 5.0


def _readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has data or an end of stream waiting (without waiting for it)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class AsyncioStream(AsyncNetworkStream):
    """One connection, as asyncio's stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"no answer within {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not send within {timeout} s") from exc
        except (OSError, ssl.SSLError, RuntimeError) as exc:
            # RuntimeError: a write on a transport that has been closed meanwhile.
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        # Not waiting for the close to finish: over TLS it waits for the server's close_notify,
        # up to asyncio's 30 s, and nothing here needs it.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle kept-alive connection: readable means the server closed it. The
            # end may already sit in the reader, or still in the socket.
            return self._reader.at_eof() or _readable(self._writer.get_extra_info("socket"))
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


async def _connected(
    opening: Coroutine[Any, Any, tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    timeout: float | None,
) -> AsyncioStream:
    """The stream ``opening`` opens, within ``timeout``; its failures as httpcore's."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await opening
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
    return AsyncioStream(reader, writer)


class AsyncioBackend(AsyncNetworkBackend):
    """httpcore's network layer on asyncio's streams."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        stream = await _connected(asyncio.open_connection(host, port, local_addr=local), timeout)
        sock = stream.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        return await _connected(asyncio.open_unix_connection(path), timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# httpcore's errors as httpx's, as httpx's own transport maps them: the client tells a call
# that never left (connect, pool) from one that may have reached Linq by these types.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One request, ready to send: ``target`` is the path (after the base URL's own) and the
    query, encoded; ``headers`` are all but ``Host``, which the lane adds."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    timeout: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer, read whole: what the client reads of it."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Lane(Protocol):
    """Where the client sends its requests. Fails with httpx's transport errors."""

    async def send(self, request: Outgoing) -> Reply: ...

    async def aclose(self) -> None: ...


class PooledLane:
    """A lane to one origin: an httpcore connection pool on :class:`AsyncioBackend`."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        base = httpx.URL(base_url)
        self._scheme = base.raw_scheme
        self._host = base.raw_host
        self._port = base.port
        self._prefix = base.raw_path.rstrip(b"/")
        # httpx's form: the port only when it is not the scheme's own.
        self._host_header = (b"Host", base.netloc)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            network_backend=AsyncioBackend(),
        )

    async def send(self, request: Outgoing) -> Reply:
        url = httpcore.URL(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            target=self._prefix + request.target.encode("ascii"),
        )
        core_request = httpcore.Request(
            request.method,
            url,
            headers=[self._host_header, *request.headers],
            content=request.body,
            extensions={"timeout": request.timeout},
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        return Reply(response.status, httpx.Headers(response.headers), content)

    async def aclose(self) -> None:
        await self._pool.aclose()


class HttpxLane:
    """A lane through an httpx transport (``httpx.MockTransport`` in tests)."""

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport) -> None:
        self._base_url = base_url.rstrip("/")
        self._transport = transport

    async def send(self, request: Outgoing) -> Reply:
        outgoing = httpx.Request(
            request.method,
            self._base_url + request.target,
            headers=request.headers,
            content=request.body or None,
            extensions={"timeout": request.timeout},
        )
        response = await self._transport.handle_async_request(outgoing)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        await self._transport.aclose()
