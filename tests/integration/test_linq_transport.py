"""The Linq client's transport (httpcore on asyncio's streams) against real loopback servers:
plain and TLS, kept-alive connections the server closes, timeouts and broken answers, each
failure the httpx error the client tells "never sent" from "may have reached Linq" by."""

from __future__ import annotations

import asyncio
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
from scheduler.linq.transport import PooledTransport

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


def _transport(ssl_context: ssl.SSLContext | None = None) -> PooledTransport:
    return PooledTransport(
        ssl_context=ssl_context or ssl.create_default_context(), max_connections=4
    )


async def _get(transport: PooledTransport, url: str, timeout: float = 5.0) -> httpx.Response:
    request = httpx.Request(
        "POST",
        url + "/v3/chats/chat-1/share_contact_card",
        extensions={
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        },
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    await response.aclose()
    return response


async def _answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep the connection: answer every request on it."""
    while True:
        await _read_head(reader)
        writer.write(OK)
        await writer.drain()


async def test_requests_share_one_kept_alive_connection() -> None:
    transport = _transport()
    try:
        async with _server(_answer_each) as (url, connections):
            for _ in range(3):
                response = await _get(transport, url)
                assert (response.status_code, response.content) == (200, b"{}")
            assert len(connections) == 1
    finally:
        await transport.aclose()


async def test_an_idle_connection_is_closed_after_the_keepalive_expiry() -> None:
    transport = PooledTransport(
        ssl_context=ssl.create_default_context(), max_connections=4, keepalive_expiry=0.1
    )
    try:
        async with _server(_answer_each) as (url, connections):
            assert (await _get(transport, url)).status_code == 200
            assert (await _get(transport, url)).status_code == 200
            await asyncio.sleep(0.3)
            assert (await _get(transport, url)).status_code == 200
            assert len(connections) == 2
    finally:
        await transport.aclose()


async def test_a_connection_the_server_closed_is_not_used_again() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(OK)
        await writer.drain()
        # Closed after the answer, without "Connection: close": the client learns it only
        # from the socket, while the connection waits in its pool.

    transport = _transport()
    try:
        async with _server(answer_once) as (url, connections):
            assert (await _get(transport, url)).status_code == 200
            await asyncio.sleep(0.05)
            assert (await _get(transport, url)).status_code == 200
            assert len(connections) == 2
    finally:
        await transport.aclose()


async def test_no_answer_is_a_read_timeout_and_the_share_may_have_reached_linq() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await asyncio.sleep(5)

    transport = _transport()
    try:
        async with _server(never_answer) as (url, _):
            with pytest.raises(httpx.ReadTimeout):
                await _get(transport, url, timeout=0.2)
            client = LinqClient(url, Secret("token-1234", "test"), timeout=0.2)
            try:
                with pytest.raises(LinqTransportError) as caught:
                    await client.share_contact_card("chat-1")
            finally:
                await client.aclose()
            assert caught.value.sent
            assert "ReadTimeout" in str(caught.value)
    finally:
        await transport.aclose()


async def test_a_refused_connection_is_a_connect_error_and_nothing_was_sent() -> None:
    async with _server(_answer_each) as (url, _):
        pass  # the port is free again: nothing listens on it
    transport = _transport()
    try:
        with pytest.raises(httpx.ConnectError):
            await _get(transport, url)
        client = LinqClient(url, Secret("token-1234", "test"))
        try:
            with pytest.raises(LinqTransportError) as caught:
                await client.share_contact_card("chat-1")
        finally:
            await client.aclose()
        assert not caught.value.sent
    finally:
        await transport.aclose()


async def test_an_answer_cut_short_is_a_protocol_error() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"trace')
        await writer.drain()

    transport = _transport()
    try:
        async with _server(cut_short) as (url, _):
            with pytest.raises(httpx.RemoteProtocolError):
                await _get(transport, url)
    finally:
        await transport.aclose()


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
    transport, stranger = _transport(trusting), _transport()
    try:
        async with _server(_answer_each, tls=server_tls) as (url, _):
            response = await _get(transport, url)
            assert (response.status_code, response.content) == (200, b"{}")
            assert (await _get(transport, url)).status_code == 200
            # A certificate nobody vouched for: the handshake fails before anything is sent.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await _get(stranger, url)
    finally:
        await transport.aclose()
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
