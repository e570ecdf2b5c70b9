"""Run the simulator under uvicorn on a real socket, in the foreground or from a test."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator

import uvicorn

from scheduler.sim.app import create_app
from scheduler.sim.settings import SimSettings


class _Server(uvicorn.Server):
    """Stops on SIGTERM/SIGINT and returns normally (uvicorn re-raises the signal instead)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals
        self.accepting = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.accepting.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it a keep-alive client waits ~40 ms (Nagle + delayed ACK) on every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class SimServer:
    """One simulator bound to a socket at construction, so its port is known before it runs."""

    def __init__(
        self,
        settings: SimSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handle_signals: bool = True,
        log_level: str = "warning",
        graceful_seconds: float = 2.0,
    ) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.host = host
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=False,
            date_header=False,  # the app sends its own, from the simulator's clock
            lifespan="on",
            # Held (timeout-fault) answers must not keep a stopping simulator alive.
            timeout_graceful_shutdown=max(1, round(graceful_seconds)),
        )
        self._server = _Server(config, handle_signals=handle_signals)

    @property
    def base_url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/partner"

    async def run(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until :meth:`stop` or a signal; call ``ready(port)`` once accepting."""
        task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        accepting = asyncio.create_task(self._server.accepting.wait())
        await asyncio.wait({task, accepting}, return_when=asyncio.FIRST_COMPLETED)
        accepting.cancel()
        if self._server.started and ready is not None:
            ready(self.port)
        try:
            await task
        finally:
            self._socket.close()
        if not self._server.started:
            raise RuntimeError("the simulator failed to start (see the log above)")

    def stop(self) -> None:
        """Ask the server to stop; safe from any thread (uvicorn polls the flag)."""
        self._server.should_exit = True


async def serve(
    settings: SimSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve in the foreground, announcing the bound port on stdout, until SIGTERM/SIGINT."""
    server = SimServer(settings, host, port)

    def announce(bound: int) -> None:
        print(f"sim: listening on {server.base_url}", file=sys.stdout, flush=True)
        if ready is not None:
            ready(bound)

    await server.run(announce)
