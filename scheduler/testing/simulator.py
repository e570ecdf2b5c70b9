"""Run a simulator on a free loopback port from a test, and drive it through ``/_sim``.

    with running_simulator(SimSettings(activation_delay=0)) as sim:
        client = LinqClient(sim.api_base, Secret(sim.token, "test"))
        chat = sim.control().create_chat("+14155550100", ["+14155550199"])
        ...
        assert sim.control().shares(chat["chat"]["id"])

The simulator runs in its own thread and event loop, so a test's own loop stays free: use
:meth:`SimHandle.async_control` from async tests (a blocking call there would stall a daemon
that shares the test's loop, e.g. while waiting for webhooks to be drained into it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from scheduler.sim.api import Simulator
from scheduler.sim.server import SimServer
from scheduler.sim.settings import SimSettings


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    api: bool = False
    pick: Callable[[Any], Any] = field(default=lambda body: body)
    accept: tuple[int, ...] = (200,)


def _state() -> _Call:
    return _Call("GET", "/_sim/state")


def _shares(chat_id: str | None) -> _Call:
    params = None if chat_id is None else {"chat_id": chat_id}
    return _Call("GET", "/_sim/shares", params=params, pick=lambda b: b["shares"])


def _calls(chat_id: str | None) -> _Call:
    params = None if chat_id is None else {"chat_id": chat_id}
    return _Call("GET", "/_sim/calls", params=params, pick=lambda b: b["calls"])


def _faults(knobs: dict[str, Any]) -> _Call:
    return _Call("POST", "/_sim/faults", json=knobs, pick=lambda b: b["knobs"])


def _inbound(chat_id: str, text: str, sender: str | None) -> _Call:
    body: dict[str, Any] = {"text": text}
    if sender is not None:
        body["from"] = sender
    return _Call("POST", f"/_sim/chats/{chat_id}/inbound", json=body)


def _fail_message(message_id: str, code: int) -> _Call:
    return _Call("POST", f"/_sim/messages/{message_id}/fail", json={"code": code})


def _delete_card(phone: str) -> _Call:
    return _Call("DELETE", f"/_sim/cards/{phone}")


def _seed(number: str, count: int, options: dict[str, Any]) -> _Call:
    body = {"from": number, "count": count, **options}
    return _Call("POST", "/_sim/seed", json=body, pick=lambda b: b["chat_ids"])


def _webhooks(enabled: bool, url: str | None, secret: str | None) -> _Call:
    body: dict[str, Any] = {"enabled": enabled}
    if url is not None:
        body["url"] = url
    if secret is not None:
        body["secret"] = secret
    return _Call("POST", "/_sim/webhooks", json=body)


def _drain(within: float) -> _Call:
    return _Call(
        "POST",
        "/_sim/webhooks/drain",
        json={"timeout": within},
        pick=lambda b: b["drained"],
        accept=(200, 504),
    )


def _reset() -> _Call:
    return _Call("POST", "/_sim/reset")


def _text_message(text: str) -> dict[str, Any]:
    return {"parts": [{"type": "text", "value": text}]}


def _create_chat(number: str, to: list[str], text: str, service: str) -> _Call:
    body = {
        "from": number,
        "to": to,
        "message": _text_message(text),
        "service": service,
    }
    return _Call("POST", "/api/partner/v3/chats", json=body, api=True)


def _send(chat_id: str, text: str) -> _Call:
    body = {"message": _text_message(text)}
    return _Call("POST", f"/api/partner/v3/chats/{chat_id}/messages", json=body, api=True)


def _block(handle: str, blocked: bool) -> _Call:
    body = {"handle": handle, "blocked": blocked}
    return _Call("POST", "/_sim/blocked_handles", json=body, pick=lambda b: b["blocked_handles"])


class SimControlError(RuntimeError):
    pass


def _result(call: _Call, response: httpx.Response) -> Any:
    if response.status_code not in call.accept:
        raise SimControlError(
            f"{call.method} {call.path}: HTTP {response.status_code}: {response.text[:500]}"
        )
    return call.pick(response.json())


class SimControl:
    """Blocking access to a running simulator's control API (plus traffic through /v3)."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.token = token
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, call: _Call) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if call.api else None
        response = self._http.request(
            call.method, call.path, json=call.json, params=call.params, headers=headers
        )
        return _result(call, response)

    def state(self) -> dict[str, Any]:
        return dict(self._run(_state()))

    def shares(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        return list(self._run(_shares(chat_id)))

    def calls(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        return list(self._run(_calls(chat_id)))

    def faults(self, **knobs: Any) -> dict[str, Any]:
        return dict(self._run(_faults(knobs)))

    def inbound(self, chat_id: str, text: str, sender: str | None = None) -> dict[str, Any]:
        return dict(self._run(_inbound(chat_id, text, sender)))

    def delete_card(self, phone: str) -> None:
        self._run(_delete_card(phone))

    def fail_message(self, message_id: str, code: int = 4001) -> dict[str, Any]:
        return dict(self._run(_fail_message(message_id, code)))

    def seed(self, number: str, count: int, **options: Any) -> list[str]:
        return list(self._run(_seed(number, count, options)))

    def webhooks(
        self, enabled: bool = True, url: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        return dict(self._run(_webhooks(enabled, url, secret)))

    def drain(self, within: float = 30.0) -> bool:
        return bool(self._run(_drain(within)))

    def reset(self) -> None:
        self._run(_reset())

    def block(self, handle: str, blocked: bool = True) -> list[dict[str, Any]]:
        return list(self._run(_block(handle, blocked)))

    def create_chat(
        self, number: str, to: list[str], text: str = "Hello", service: str = "iMessage"
    ) -> dict[str, Any]:
        return dict(self._run(_create_chat(number, to, text, service)))

    def send(self, chat_id: str, text: str = "Hello again") -> dict[str, Any]:
        return dict(self._run(_send(chat_id, text)))


class AsyncSimControl:
    """The same calls as :class:`SimControl`, for async tests."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.token = token
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSimControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, call: _Call) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if call.api else None
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params, headers=headers
        )
        return _result(call, response)

    async def state(self) -> dict[str, Any]:
        return dict(await self._run(_state()))

    async def shares(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        return list(await self._run(_shares(chat_id)))

    async def calls(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        return list(await self._run(_calls(chat_id)))

    async def faults(self, **knobs: Any) -> dict[str, Any]:
        return dict(await self._run(_faults(knobs)))

    async def inbound(self, chat_id: str, text: str, sender: str | None = None) -> dict[str, Any]:
        return dict(await self._run(_inbound(chat_id, text, sender)))

    async def delete_card(self, phone: str) -> None:
        await self._run(_delete_card(phone))

    async def fail_message(self, message_id: str, code: int = 4001) -> dict[str, Any]:
        return dict(await self._run(_fail_message(message_id, code)))

    async def seed(self, number: str, count: int, **options: Any) -> list[str]:
        return list(await self._run(_seed(number, count, options)))

    async def webhooks(
        self, enabled: bool = True, url: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        return dict(await self._run(_webhooks(enabled, url, secret)))

    async def drain(self, within: float = 30.0) -> bool:
        return bool(await self._run(_drain(within)))

    async def reset(self) -> None:
        await self._run(_reset())

    async def block(self, handle: str, blocked: bool = True) -> list[dict[str, Any]]:
        return list(await self._run(_block(handle, blocked)))

    async def create_chat(
        self, number: str, to: list[str], text: str = "Hello", service: str = "iMessage"
    ) -> dict[str, Any]:
        return dict(await self._run(_create_chat(number, to, text, service)))

    async def send(self, chat_id: str, text: str = "Hello again") -> dict[str, Any]:
        return dict(await self._run(_send(chat_id, text)))


@dataclass
class SimHandle:
    base_url: str
    api_base: str
    settings: SimSettings
    sim: Simulator  # in-process access; read it, do not mutate it from the test thread

    @property
    def token(self) -> str:
        return self.settings.token

    def control(self) -> SimControl:
        return SimControl(self.base_url, self.settings.token)

    def async_control(self) -> AsyncSimControl:
        return AsyncSimControl(self.base_url, self.settings.token)


@contextmanager
def running_simulator(
    settings: SimSettings | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[SimHandle]:
    """Serve a simulator on a real socket in a background thread for the ``with`` block."""
    settings = settings or SimSettings()
    server = SimServer(settings, host, port, handle_signals=False)
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(server.run(lambda _port: started.set()))
        except BaseException as exc:
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=main, name=f"linq-sim-{server.port}", daemon=True)
    thread.start()
    started.wait(30)
    if failure or not thread.is_alive():
        raise RuntimeError("the simulator did not start") from (failure[0] if failure else None)
    try:
        yield SimHandle(server.base_url, server.api_base, settings, server.app.state.sim)
    finally:
        server.stop()
        thread.join(30)
