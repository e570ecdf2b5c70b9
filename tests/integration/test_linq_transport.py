"""The Linq client's transport (httpcore on asyncio's streams) against real loopback servers:
plain and TLS, kept-alive connections the server closes, timeouts and broken answers, each
failure the httpx error the client tells "never sent" from "may have reached Linq" by."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from scheduler.config import Secret
from scheduler.errors import LinqTransportError
from scheduler.linq.client import LinqClient
from scheduler.linq.transport import KEEPALIVE_EXPIRY, Outgoing, PooledLane, Reply

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@asynccontextmanager
async def _server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running ``handler`` per connection: its base URL and a list with
    one entry per connection accepted."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://localhost:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def _serving(
    handler: Handler,
    *,
    tls: ssl.SSLContext | None = None,
    trust: ssl.SSLContext | None = None,
    keepalive_expiry: float = KEEPALIVE_EXPIRY,
) -> AsyncIterator[tuple[PooledLane, str, list[int]]]:
    """A server (see :func:`_server`) and the client's transport to it."""
    async with _server(handler, tls) as (url, connections):
        transport = PooledLane(
            url,
            ssl_context=trust or ssl.create_default_context(),
            max_connections=4,
            keepalive_expiry=keepalive_expiry,
        )
        try:
            yield transport, url, connections
        finally:
            await transport.aclose()


async def _share(transport: PooledLane, timeout: float = 5.0) -> Reply:
    return await transport.send(
        Outgoing(
            "POST",
            "/v3/chats/chat-1/share_contact_card",
            [(b"Content-Length", b"0")],
            b"",
            {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout},
        )
    )


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep the connection: answer every request on it."""
    while True:
        await _read_head(reader)
        writer.write(OK)
        await writer.drain()


async def test_requests_share_one_kept_alive_connection() -> None:
    async with _serving(_answer_each) as (transport, _, connections):
        for _ in range(3):
            response = await _share(transport)
            assert (response.status_code, response.content) == (200, b"{}")
        assert len(connections) == 1


async def test_an_idle_connection_is_closed_after_the_keepalive_expiry() -> None:
    async with _serving(_answer_each, keepalive_expiry=0.1) as (transport, _, connections):
        assert (await _share(transport)).status_code == 200
        assert (await _share(transport)).status_code == 200
        await asyncio.sleep(0.3)
        assert (await _share(transport)).status_code == 200
        assert len(connections) == 2


async def test_a_connection_the_server_closed_is_not_used_again() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(OK)
        await writer.drain()
        # Closed after the answer, without "Connection: close": the client learns it only
        # from the socket, while the connection waits in its pool.

    async with _serving(answer_once) as (transport, _, connections):
        assert (await _share(transport)).status_code == 200
        await asyncio.sleep(0.05)
        assert (await _share(transport)).status_code == 200
        assert len(connections) == 2


async def test_no_answer_is_a_read_timeout_and_the_share_may_have_reached_linq() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await asyncio.sleep(5)

    async with _serving(never_answer) as (transport, url, _):
        with pytest.raises(httpx.ReadTimeout):
            await _share(transport, timeout=0.2)
        client = LinqClient(url, Secret("token-1234", "test"), timeout=0.2)
        try:
            with pytest.raises(LinqTransportError) as caught:
                await client.share_contact_card("chat-1")
        finally:
            await client.aclose()
        assert caught.value.sent
        assert "ReadTimeout" in str(caught.value)


async def test_a_refused_connection_is_a_connect_error_and_nothing_was_sent() -> None:
    async with _server(_answer_each) as (url, _):
        pass  # the port is free again: nothing listens on it
    transport = PooledLane(url, ssl_context=ssl.create_default_context(), max_connections=1)
    try:
        with pytest.raises(httpx.ConnectError):
            await _share(transport)
    finally:
        await transport.aclose()
    client = LinqClient(url, Secret("token-1234", "test"))
    try:
        with pytest.raises(LinqTransportError) as caught:
            await client.share_contact_card("chat-1")
    finally:
        await client.aclose()
    assert not caught.value.sent


async def test_an_answer_cut_short_is_a_protocol_error() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"trace')
        await writer.drain()

    async with _serving(cut_short) as (transport, _, _):
        with pytest.raises(httpx.RemoteProtocolError):
            await _share(transport)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and its key (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_is_verified_against_the_trusted_certificates(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with _serving(_answer_each, tls=server_tls, trust=trusting) as (transport, url, _):
        response = await _share(transport)
        assert (response.status_code, response.content) == (200, b"{}")
        assert (await _share(transport)).status_code == 200
        # A certificate nobody vouched for: the handshake fails before anything is sent.
        stranger = PooledLane(url, ssl_context=ssl.create_default_context(), max_connections=1)
        try:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await _share(stranger)
        finally:
            await stranger.aclose()


def test_the_daemons_event_loop_runs_the_same_exchanges(certificate: tuple[Path, Path]) -> None:
    """The daemon runs on uvloop: TLS, kept-alive connections and a closed one there too."""
    import uvloop

    async def exchanges() -> None:
        await test_tls_is_verified_against_the_trusted_certificates(certificate)
        await test_a_connection_the_server_closed_is_not_used_again()
        await test_no_answer_is_a_read_timeout_and_the_share_may_have_reached_linq()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(exchanges())


async def test_the_client_sends_what_httpx_would() -> None:
    """Host, the token, the body's length and JSON as httpx writes them, over the real lane."""
    heads: list[bytes] = []
    bodies: list[bytes] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await _read_head(reader)
            heads.append(head)
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            bodies.append(await reader.readexactly(length))
            writer.write(OK)
            await writer.drain()

    async with _server(capture) as (url, _):
        client = LinqClient(url + "/api", Secret("token-1234", "test"))
        try:
            await client.share_contact_card("chat/1")
            await client._json("POST", "/v3/echo", json={"name": "Zoë", "n": [1, 2]})
            await client._json("GET", "/v3/chats", params={"from": "+14155550100", "limit": 5})
        finally:
            await client.aclose()
    port = url.rsplit(":", 1)[1]
    share, echo, listing = (head.decode().split("\r\n") for head in heads)
    assert share[0] == "POST /api/v3/chats/chat%2F1/share_contact_card HTTP/1.1"
    assert f"Host: localhost:{port}" in share
    assert "Authorization: Bearer token-1234" in share
    assert "Content-Length: 0" in share
    assert "Content-Type: application/json" in echo
    assert (
        bodies[1]
        == json.dumps(
            {"name": "Zoë", "n": [1, 2]}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    assert listing[0] == "GET /api/v3/chats?from=%2B14155550100&limit=5 HTTP/1.1"
    assert not any(line.lower().startswith("content-length") for line in listing)
