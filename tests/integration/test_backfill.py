"""Backfill against the simulator over loopback HTTP, into SQLite and PostgreSQL ledgers.

Time is the shared clock file: the simulator stamps its chats and messages with it and the
backfill schedules chats with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from scheduler import clock
from scheduler.config import Schedule, Secret, Secrets
from scheduler.core.rule import LineFacts, next_share_at
from scheduler.core.status import ChatStatus
from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.ingest.backfill import (
    BackfillOptions,
    BackfillReport,
    LineReport,
    lines_to_backfill,
    run_backfill,
)
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chat_facts, chats, lines
from scheduler.ledger.models import backfill_state_table
from scheduler.linq.client import LinqClient
from scheduler.metrics import Metrics
from scheduler.sim.settings import SimSettings
from scheduler.sim.state import SimState
from scheduler.testing import SimHandle
from tests.conftest import PgServer
from tests.factories import add_line, policy

LINES = ["+14155550101", "+14155550102", "+14155550103"]
# A Monday noon: inside the 09:00-20:00 UTC window, so eligible chats are due at once.
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
SECRET = "whsec-backfill-1f2e"
COMMAND = (sys.executable, "-m", "scheduler")
# Timestamps the simulator and the ledger keep; the simulator's iso() truncates to these.
_WRITTEN = ("created_at", "updated_at")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=0, seed=11)


@pytest.fixture
async def sim(sim: SimHandle, clock_file: Path) -> SimHandle:
    clock.set_clock_file(clock_file, T0)
    async with sim.async_control() as control:
        await control.webhooks(enabled=False)
    return sim


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the simulator, keeping each request; ``fault`` may answer in its place."""

    def __init__(self, fault: Callable[[httpx.Request], httpx.Response | None] | None = None):
        self.inner = httpx.AsyncHTTPTransport()
        self.fault = fault
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fault is not None:
            answer = self.fault(request)
            if answer is not None:
                return answer
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def chat_lists(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/v3/chats")]


def linq_error(status: int, code: int, retry_after: int | None = None) -> httpx.Response:
    error: dict[str, Any] = {"status": status, "code": code, "message": "injected"}
    headers = {}
    if retry_after is not None:
        error["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    body = {"success": False, "error": error, "trace_id": "t-injected"}
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class Rig:
    ledger: Ledger
    sim: SimHandle
    recorder: Recorder
    client: LinqClient
    sleeps: list[float]

    async def backfill(self, scopes: list[str] | None = None, **kwargs: Any) -> BackfillReport:
        """A run on a pretend clock: waits are recorded and pass at once."""
        now = [0.0]

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            now[0] += seconds

        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("monotonic", lambda: now[0])
        return await run_backfill(self.ledger, self.client, policy(), scopes or LINES, **kwargs)


@pytest.fixture
async def rig(ledger: Ledger, sim: SimHandle) -> AsyncIterator[Rig]:
    recorder = Recorder()
    client = LinqClient(sim.api_base, Secret(sim.token, "test"), transport=recorder)
    for number in LINES:
        await add_line(ledger, number, T0)
    yield Rig(ledger, sim, recorder, client, [])
    await client.aclose()


# -- reading both sides ----------------------------------------------------------------------


def _ms(at: datetime | None) -> datetime | None:
    return None if at is None else at.replace(microsecond=at.microsecond // 1000 * 1000)


def from_simulator(state: SimState) -> dict[str, dict[str, Any]]:
    """What the ledger should know of each chat, read from the simulator's own records."""
    expected = {}
    for chat in state.chat_order:
        out = [m.created_at for m in chat.messages if m.is_from_me]
        inbound = [m.created_at for m in chat.messages if not m.is_from_me]
        expected[chat.id] = {
            "line": chat.from_number,
            "recipients": ",".join(sorted(h.handle for h in chat.recipients)),
            "is_group": chat.is_group,
            "service": chat.service,
            "first_outbound_at": _ms(min(out)) if out else None,
            "last_outbound_at": _ms(max(out)) if out else None,
            "last_inbound_at": _ms(max(inbound)) if inbound else None,
            "status": ChatStatus.opted_out if state.is_opted_out(chat) else ChatStatus.active,
            "last_shared_at": None,
            "share_count": 0,
        }
    return expected


async def ledger_chats(ledger: Ledger) -> dict[str, dict[str, Any]]:
    async with ledger.read() as conn:
        rows = await conn.execute(sa.select(chats).order_by(chats.c.chat_id))
        return {r.chat_id: dict(r._mapping) for r in rows}


async def ledger_dump(ledger: Ledger) -> tuple[Any, ...]:
    async with ledger.read() as conn:
        return (
            [tuple(r) for r in await conn.execute(sa.select(chats).order_by(chats.c.chat_id))],
            [tuple(r) for r in await conn.execute(sa.select(lines).order_by(lines.c.number))],
        )


def _start(at: datetime) -> str:
    return at.isoformat()


# -- the must-show ---------------------------------------------------------------------------


async def test_five_thousand_chats_on_three_lines_reach_the_simulators_state_and_stay(
    rig: Rig,
) -> None:
    async with rig.sim.async_control() as control:
        yesterday = T0 - 26 * H
        await control.seed(LINES[0], 1650, start=_start(yesterday))
        await control.seed(LINES[0], 10, is_group=True, start=_start(yesterday - H))
        await control.seed(LINES[0], 7, outbound=False, start=_start(yesterday - 2 * H))
        await control.seed(LINES[1], 1647, start=_start(yesterday - 3 * H), spacing_seconds=2)
        await control.seed(LINES[1], 20, service="SMS", start=_start(yesterday - 4 * H))
        talkers = await control.seed(LINES[2], 1666, start=_start(yesterday - 5 * H))
        # Some recipients write back; two of them write STOP.
        for chat_id, text in zip(talkers[:5], ["hi", "thanks", "ok", "STOP", "stop"], strict=True):
            await control.inbound(chat_id, text)
        state = await control.state()
    assert state["counts"]["chats"] == 5000
    assert state["webhooks"]["delivered"] == 0  # no webhook ever reached anyone

    first = await rig.backfill()
    assert first.ok, first.as_dict()
    assert [r.chats_seen for r in first.lines] == [1667, 1667, 1666]
    assert [r.pages for r in first.lines] == [17, 17, 17]
    assert first.totals()["created"] == 5000
    assert first.totals()["message_pages"] == 5000
    # Every list request asked for full pages of one line.
    for request in rig.recorder.chat_lists():
        assert request.url.params["limit"] == "100"
        assert request.url.params["from"] in LINES

    expected = from_simulator(rig.sim.sim.state)
    rows = await ledger_chats(rig.ledger)
    assert set(rows) == set(expected)
    active = LineFacts(card_active=True, paused=False, timezone=None)
    for chat_id, want in expected.items():
        row = rows[chat_id]
        assert {k: row[k] for k in want} == want, chat_id
        # Scheduled by the sharing rule at the time the row was written.
        assert row["next_share_at"] == next_share_at(
            chat_facts(_Row(row)), active, policy(), row["created_at"]
        )
    statuses = [r["status"] for r in rows.values()]
    assert statuses.count(ChatStatus.opted_out) == 2
    due = [r for r in rows.values() if r["next_share_at"] is not None]
    assert len(due) == 5000 - 10 - 7 - 20 - 2  # not groups, not without outbound, not SMS

    before = await ledger_dump(rig.ledger)
    second = await rig.backfill()
    assert second.ok
    assert second.totals()["created"] == 0
    assert second.totals()["updated"] == 0
    assert second.totals()["unchanged"] == 5000
    # Only the chats still without an outbound message are looked into again.
    assert second.totals()["message_pages"] == 7
    assert await ledger_dump(rig.ledger) == before


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


# -- the same state as the webhooks ----------------------------------------------------------


@pytest.fixture
async def webhook_ledger(
    ledger_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Ledger]:
    """A second, empty ledger on the same database kind as ``ledger``."""
    if ledger_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "webhooks.db"
        shutil.copyfile(template, path)
        url, drop = f"sqlite:///{path}", None
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        name = server.create(template=server.template)
        url, drop = server.url(name), name
    led = Ledger(create_engine(url, pool_size=5))
    yield led
    await led.dispose()
    if drop is not None:
        server.drop(drop)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


async def test_backfill_reaches_the_ledger_the_webhooks_reach(
    rig: Rig, webhook_ledger: Ledger, clock_file: Path
) -> None:
    # After the window: every eligible chat waits for tomorrow 09:00, whenever it is written.
    clock.set_clock_file(clock_file, T0.replace(hour=21))
    for number in LINES:
        await add_line(webhook_ledger, number, T0)
    runtime = Runtime(
        schedule=Schedule(),
        secrets=Secrets(Secret("tok", "t"), [Secret(SECRET, "s")]),
        policy=policy(),
        ledger=webhook_ledger,
        metrics=Metrics(),
        readiness=_ready,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        async with rig.sim.async_control() as control:
            url = f"http://127.0.0.1:{port}/webhooks/linq"
            await control.webhooks(enabled=True, url=url, secret=SECRET)
            await control.seed(LINES[0], 30, webhooks=True, start=_start(T0 - 30 * H))
            await control.seed(LINES[1], 5, webhooks=True, service="SMS")
            await control.seed(LINES[1], 3, webhooks=True, is_group=True)
            one = (await control.create_chat(LINES[2], ["+12125550001"]))["chat"]["id"]
            two = (await control.create_chat(LINES[2], ["+12125550002"]))["chat"]["id"]
            three = (await control.create_chat(LINES[2], ["+12125550003", "a@example.com"]))[
                "chat"
            ]["id"]
            await control.send(one, "second message")
            await control.inbound(one, "hello")
            await control.inbound(two, "STOP")
            await control.inbound(three, "stop", sender="a@example.com")
            await control.inbound(three, "sorry, carry on", sender="a@example.com")
            assert await control.drain(30)
            hooks = await control.state()
        assert hooks["webhooks"]["failed"] == 0
        assert hooks["webhooks"]["delivered"] > 100
    finally:
        server.should_exit = True
        await serving

    report = await rig.backfill()
    assert report.ok
    by_webhook = await ledger_chats(webhook_ledger)
    by_backfill = await ledger_chats(rig.ledger)
    assert len(by_backfill) == 41
    assert set(by_backfill) == set(by_webhook)
    for chat_id, row in by_backfill.items():
        theirs = by_webhook[chat_id]
        mine = {k: v for k, v in row.items() if k not in _WRITTEN}
        assert mine == {k: v for k, v in theirs.items() if k not in _WRITTEN}, chat_id
    assert by_backfill[two]["status"] == ChatStatus.opted_out
    assert by_backfill[three]["status"] == ChatStatus.active
    assert by_backfill[one]["next_share_at"] == (T0 + 24 * H).replace(hour=9)


# -- resuming, rate limits, faults -----------------------------------------------------------


async def _state(ledger: Ledger, scope: str) -> Any:
    async with ledger.read() as conn:
        table = backfill_state_table
        return (await conn.execute(sa.select(table).where(table.c.scope == scope))).one()


async def test_a_stopped_run_resumes_from_its_cursor(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 350, start=_start(T0 - 5 * H))
    stop = asyncio.Event()

    def after_two_pages(report: LineReport) -> None:
        if report.pages == 2:
            stop.set()

    first = await rig.backfill([LINES[0]], stop=stop, progress=after_two_pages)
    assert first.interrupted and not first.ok
    saved = await _state(rig.ledger, LINES[0])
    assert saved.cursor is not None and saved.completed_at is None
    assert saved.chats_seen == 200
    assert len(await ledger_chats(rig.ledger)) == 200

    rig.recorder.requests.clear()
    second = await rig.backfill([LINES[0]])
    assert second.ok
    [line] = second.lines
    assert line.resumed and line.pages == 2 and line.chats_seen == 350
    assert rig.recorder.chat_lists()[0].url.params["cursor"] == saved.cursor
    assert len(await ledger_chats(rig.ledger)) == 350
    done = await _state(rig.ledger, LINES[0])
    assert done.cursor is None and done.completed_at is not None and done.chats_seen == 350

    # A finished run is not resumed: the next one starts from the first page.
    rig.recorder.requests.clear()
    third = await rig.backfill([LINES[0]])
    assert not third.lines[0].resumed
    assert "cursor" not in rig.recorder.chat_lists()[0].url.params


async def test_retry_after_is_waited_out_and_5xx_retried_with_backoff(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 120, start=_start(T0 - 5 * H))
    faults = iter([linq_error(429, 1007, retry_after=7), linq_error(429, 1007, retry_after=7)])
    server_errors = iter([linq_error(503, 3006), linq_error(500, 3006)])

    def inject(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/v3/chats"):
            return next(faults, None)
        if request.url.path.endswith("/messages"):
            return next(server_errors, None)
        return None

    rig.recorder.fault = inject
    report = await rig.backfill(
        [LINES[0]],
        options=BackfillOptions(message_concurrency=1, retry_backoff=0.5, retry_backoff_max=4),
    )
    assert report.ok
    assert rig.sleeps.count(7) >= 2
    backoffs = [s for s in rig.sleeps if s != 7]
    assert len(backoffs) == 2 and all(0 <= s <= 1.0 for s in backoffs)
    assert len(await ledger_chats(rig.ledger)) == 120


async def test_the_simulators_own_429s_are_ridden_out(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[1], 150, start=_start(T0 - 5 * H))
        await control.faults(global_429_rate=0.3, retry_after=2)
    try:
        report = await rig.backfill([LINES[1]])
    finally:
        async with rig.sim.async_control() as control:
            await control.faults(global_429_rate=0)
    assert report.ok
    assert 2 in rig.sleeps and all(0 < s <= 2 for s in rig.sleeps)
    assert len(await ledger_chats(rig.ledger)) == 150


async def test_a_fault_outlasting_the_retries_fails_the_line_and_the_next_run_resumes(
    rig: Rig,
) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 250, start=_start(T0 - 5 * H))
        await control.seed(LINES[1], 20, start=_start(T0 - 5 * H))
    lists = 0

    def second_page_down(request: httpx.Request) -> httpx.Response | None:
        nonlocal lists
        if request.url.path.endswith("/v3/chats") and request.url.params["from"] == LINES[0]:
            lists += 1
            if lists >= 2:
                return linq_error(503, 3006)
        return None

    rig.recorder.fault = second_page_down
    report = await rig.backfill(LINES[:2], options=BackfillOptions(max_tries=3))
    assert not report.ok
    broken, fine = report.lines
    assert broken.error is not None and "3006" in broken.error and broken.pages == 1
    assert fine.completed and fine.chats_seen == 20  # one line's trouble does not stop others
    assert (await _state(rig.ledger, LINES[0])).chats_seen == 100

    rig.recorder.fault = None
    again = await rig.backfill([LINES[0]])
    assert again.ok and again.lines[0].resumed and again.lines[0].pages == 2
    assert len(await ledger_chats(rig.ledger)) == 270


async def test_a_long_retry_after_stops_the_run_for_later(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 10)
    rig.recorder.fault = lambda _r: linq_error(429, 1007, retry_after=3600)
    report = await rig.backfill([LINES[0]], options=BackfillOptions(max_retry_after=600))
    assert not report.ok
    assert "Retry-After 3600" in (report.lines[0].error or "")
    assert rig.sleeps == []


# -- what a backfill must not disturb --------------------------------------------------------


async def test_fresher_webhook_knowledge_is_kept(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        [known] = await control.seed(LINES[0], 1, start=_start(T0 - 5 * H))
        [missed] = await control.seed(LINES[0], 1, start=_start(T0 - 6 * H))
        await control.send(missed, "a message whose webhook was lost")
    async with rig.ledger.write() as conn:
        # Webhooks told of a later message than the listing shows yet, an opt-out seen on a
        # share (403/2024) and shares made; for the other chat, only its latest message.
        await conn.execute(
            sa.insert(chats),
            [
                {
                    "chat_id": known,
                    "line": LINES[0],
                    "recipients": "+19995550000",
                    "service": "iMessage",
                    "first_outbound_at": T0 - 5 * H,
                    "last_outbound_at": T0 - H,
                    "last_shared_at": T0 - 2 * H,
                    "share_count": 3,
                    "status": ChatStatus.opted_out,
                    "created_at": T0,
                    "updated_at": T0,
                },
                {
                    "chat_id": missed,
                    "line": LINES[0],
                    "recipients": "",
                    "service": "iMessage",
                    "first_outbound_at": T0 - 2 * H,
                    "last_outbound_at": T0 - 2 * H,
                    "last_shared_at": None,
                    "share_count": 0,
                    "status": ChatStatus.active,
                    "created_at": T0,
                    "updated_at": T0,
                },
            ],
        )
    report = await rig.backfill([LINES[0]])
    rows = await ledger_chats(rig.ledger)
    kept = rows[known]
    assert kept["last_outbound_at"] == T0 - H
    assert kept["first_outbound_at"] == T0 - 5 * H
    assert (kept["status"], kept["share_count"], kept["last_shared_at"]) == (
        ChatStatus.opted_out,
        3,
        T0 - 2 * H,
    )
    # The listing adds what the ledger lacked: the recipient from the chat object.
    assert "+19995550000" in kept["recipients"].split(",")
    # The chat that moved since the ledger last heard: its messages were read again.
    fixed = rows[missed]
    assert fixed["first_outbound_at"] == T0 - 6 * H
    assert fixed["last_outbound_at"] is not None and fixed["last_outbound_at"] > T0 - H
    assert report.lines[0].message_pages == 1


async def test_a_failed_outbound_message_is_no_outbound_activity(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        created = await control.create_chat(LINES[0], ["+12125550003"])
        failed_only = created["chat"]["id"]
        await control.fail_message(created["chat"]["message"]["id"])
        [kept] = await control.seed(LINES[0], 1, start=_start(T0 - 3 * H))
        later = await control.send(kept, "this one fails")
        await control.fail_message(later["message"]["id"])
    await rig.backfill([LINES[0]])
    rows = await ledger_chats(rig.ledger)
    # A chat whose only outbound message failed has none: it is never due.
    assert rows[failed_only]["first_outbound_at"] is None
    assert rows[failed_only]["next_share_at"] is None
    # A failed message after a delivered one moves nothing.
    assert rows[kept]["first_outbound_at"] == T0 - 3 * H
    assert rows[kept]["last_outbound_at"] == T0 - 3 * H


async def test_since_skips_chats_without_recent_activity(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 40, start=_start(T0 - 30 * 24 * H))
        recent = await control.seed(LINES[0], 15, start=_start(T0 - 24 * H))
    report = await rig.backfill([LINES[0]], since=T0 - 7 * 24 * H)
    assert report.ok
    assert report.lines[0].skipped_before_since == 40
    assert report.lines[0].message_pages == 15
    assert set(await ledger_chats(rig.ledger)) == set(recent)


async def test_lines_come_from_the_schedule_and_the_ledger(rig: Rig) -> None:
    schedule = Schedule.model_validate({"lines": [{"number": "+14155550199"}]})
    assert await lines_to_backfill(rig.ledger, schedule) == sorted([*LINES, "+14155550199"])
    async with rig.ledger.write() as conn:
        await conn.execute(sa.delete(lines))
    assert await lines_to_backfill(rig.ledger, Schedule()) == ["*"]


async def test_all_lines_scope_finds_chats_of_unknown_lines(rig: Rig) -> None:
    async with rig.sim.async_control() as control:
        await control.seed("+14155550177", 12, start=_start(T0 - 5 * H))
    report = await rig.backfill(["*"])
    assert report.ok
    rows = await ledger_chats(rig.ledger)
    assert {r["line"] for r in rows.values()} == {"+14155550177"}
    async with rig.ledger.read() as conn:
        numbers = {n for (n,) in await conn.execute(sa.select(lines.c.number))}
    assert "+14155550177" in numbers


# -- the command -----------------------------------------------------------------------------


def _config(tmp_path: Path, sim: SimHandle, database_url: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        json.dumps(
            {
                "linq": {"base_url": sim.api_base},
                "database": {"url": database_url},
                "lines": [{"number": n} for n in LINES],
                "logging": {"format": "json"},
            }
        )
    )
    return path


async def _run(*args: str, env: dict[str, str], tty: bool = False) -> tuple[int, str, str]:
    """Run ``share-scheduler`` as a real process; with ``tty`` its stdout is a terminal."""
    if not tty:
        proc = await asyncio.create_subprocess_exec(
            *COMMAND,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()
    import pty

    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, stdout=slave, stderr=asyncio.subprocess.PIPE, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()

    def read_all() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = loop.run_in_executor(None, read_all)
    _, err = await proc.communicate()
    await reader
    os.close(master)
    return proc.returncode or 0, b"".join(chunks).decode(errors="replace"), err.decode()


def _env(sim: SimHandle, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["LINQ_API_KEY"] = sim.token
    env["COLUMNS"] = "200"  # rich draws tables 80 wide off a terminal
    env.update(extra)
    return env


async def test_the_command_backfills_every_line_and_prints_json(
    rig: Rig, ledger_url: str, tmp_path: Path
) -> None:
    async with rig.sim.async_control() as control:
        for number in LINES:
            await control.seed(number, 30, start=_start(T0 - 5 * H))
    config = _config(tmp_path, rig.sim, ledger_url)
    code, out, err = await _run("backfill", "--config", str(config), "--json", env=_env(rig.sim))
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["totals"]["created"] == 90
    assert [line["line"] for line in report["lines"]] == LINES
    assert len(await ledger_chats(rig.ledger)) == 90
    assert rig.sim.token not in out + err

    code, out, err = await _run(
        "backfill", "--config", str(config), "--line", LINES[1], env=_env(rig.sim)
    )
    assert code == 0, err
    assert LINES[1] in out and LINES[0] not in out
    assert "done" in out


async def test_the_command_shows_a_progress_bar_on_a_terminal_only(
    rig: Rig, ledger_url: str, tmp_path: Path
) -> None:
    async with rig.sim.async_control() as control:
        await control.seed(LINES[0], 120, start=_start(T0 - 5 * H))
    config = _config(tmp_path, rig.sim, ledger_url)
    args = ("backfill", "--config", str(config), "--line", LINES[0], "--restart")
    code, on_tty, err = await _run(*args, env=_env(rig.sim, COLUMNS="120"), tty=True)
    assert code == 0, err
    assert "120 chats, 2 pages" in on_tty
    code, piped, err = await _run(*args, env=_env(rig.sim))
    assert code == 0, err
    assert "chats, " not in piped
    # The summary table, as plain columns when piped.
    assert "RESULT" in piped and f"{LINES[0]}  2      120" in piped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--line", "4155550100"], "is not an E.164 phone number"),
        (["--since", "last tuesday"], "is not a date (YYYY-MM-DD) or an ISO-8601 time"),
        (["--since", "2999-01-01"], "is in the future"),
    ],
)
async def test_the_command_refuses_bad_options(
    sim: SimHandle, sqlite_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    config = _config(tmp_path, sim, sqlite_url)
    code, _out, err = await _run("backfill", "--config", str(config), *args, env=_env(sim))
    assert code == 2
    assert message in err


async def test_the_command_needs_the_api_token(
    sim: SimHandle, sqlite_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, sim, sqlite_url)
    env = _env(sim)
    del env["LINQ_API_KEY"]
    code, _, err = await _run("backfill", "--config", str(config), env=env)
    assert code == 2
    assert "LINQ_API_KEY is not set" in err


async def test_an_unreachable_line_fails_the_command(
    rig: Rig, ledger_url: str, tmp_path: Path
) -> None:
    async with rig.sim.async_control() as control:
        await control.faults(lines=[LINES[0]])
    try:
        config = _config(tmp_path, rig.sim, ledger_url)
        code, _out, err = await _run(
            "backfill", "--config", str(config), "--line", LINES[2], env=_env(rig.sim)
        )
    finally:
        async with rig.sim.async_control() as control:
            await control.faults(lines=None)
    assert code == 1
    assert "2005" in err and LINES[2] in err


class HostileIds(Recorder):
    """The simulator's chat listing, with the first chat's id replaced by ``hostile``."""

    def __init__(self, hostile: str) -> None:
        super().__init__()
        self.hostile = hostile

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await super().handle_async_request(request)
        if not request.url.path.endswith("/v3/chats"):
            return answer
        await answer.aread()
        body = answer.json()
        listed = body["chats"]
        if listed:
            listed[0]["id"] = self.hostile
        return httpx.Response(answer.status_code, json=body)


@pytest.mark.parametrize("hostile", ["line\nbreak", "\u202eevil", "<script>"])
async def test_a_listed_chat_with_a_hostile_id_is_not_written(
    ledger: Ledger, sim: SimHandle, hostile: str
) -> None:
    for number in LINES:
        await add_line(ledger, number, T0)
    async with sim.async_control() as control:
        await control.seed(LINES[0], 3, start=_start(T0 - 26 * H))
    transport = HostileIds(hostile)
    client = LinqClient(sim.api_base, Secret(sim.token, "test"), transport=transport)
    try:
        rig = Rig(ledger, sim, transport, client, [])
        report = await rig.backfill([LINES[0]])
    finally:
        await client.aclose()
    stored = await ledger_chats(ledger)
    assert hostile not in stored
    assert len(stored) == 2, sorted(stored)
    assert report.lines[0].rejected_chats == 1
