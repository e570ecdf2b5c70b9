"""Card sync against the simulator over loopback HTTP, on real SQLite and PostgreSQL ledgers.

Time is the shared clock file: the simulator (its card budget, activation delay) and the sync
see the same jumps. Every request the sync sends is recorded by a transport that forwards it to
the simulator unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from scheduler import clock
from scheduler.cards.observe import record_observed_cards, sync_configured_lines
from scheduler.cards.status import card_status, set_line_paused
from scheduler.cards.sync import CardSync, SyncReport
from scheduler.config import CardsConfig, Schedule, Secret, SharePassConfig, parse_schedule
from scheduler.core.card_plan import Action
from scheduler.core.status import CardState
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chats, lines
from scheduler.linq.client import LinqClient
from scheduler.linq.types import ContactCard
from scheduler.metrics import Metrics
from scheduler.share.share_pass import SharePass
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle
from tests.factories import add_chats_named, policy

LINE = "+14155550100"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, inside the 09:00-20:00 UTC window
MIN = timedelta(minutes=1)
CARD = {"first_name": "Acme", "last_name": "Support", "image_url": "https://example.com/a.png"}
WRITES = ("POST", "PATCH")


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(activation_delay=60, seed=5)


@pytest.fixture
def sim(sim: SimHandle, clock_file: Path) -> SimHandle:
    clock.set_clock_file(clock_file, T0)
    return sim


@pytest.fixture
def at(clock_file: Path) -> Callable[[datetime], None]:
    def move(target: datetime) -> None:
        clock.set_clock_file(clock_file, target)

    return move


@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    status: int
    at: datetime


class Recorder(httpx.AsyncBaseTransport):
    """Forwards every request to the simulator and keeps what was sent and answered."""

    def __init__(self, before: Callable[[httpx.Request], Awaitable[None]] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.before = before
        self.sent: list[Sent] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.before is not None:
            await self.before(request)
        sent_at = clock.now()
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        await response.aclose()
        payload = json.loads(request.content) if request.content else None
        self.sent.append(
            Sent(
                request.method,
                request.url.path,
                dict(request.url.params),
                payload,
                response.status_code,
                sent_at,
            )
        )
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()

    def writes(self) -> list[Sent]:
        return [s for s in self.sent if s.method in WRITES and s.path.endswith("/contact_card")]


def _schedule(card: dict[str, Any] | None, number: str = LINE) -> Schedule:
    line: dict[str, Any] = {"number": number}
    if card is not None:
        line["card"] = card
    return parse_schedule({"lines": [line]}, "test.yaml")


CARDS = CardsConfig(
    check_interval=MIN,
    activation_poll=timedelta(seconds=2),
    activation_timeout=timedelta(minutes=5),
    retry_wait=MIN,
)


class Rig:
    """One 'process': a ledger connection, a Linq client through a recorder, a card sync."""

    def __init__(
        self,
        ledger: Ledger,
        sim: SimHandle,
        recorder: Recorder | None = None,
        config: CardsConfig = CARDS,
    ) -> None:
        self.ledger = ledger
        self.recorder = recorder or Recorder()
        self.client = LinqClient(
            sim.api_base, Secret(sim.token, "test"), transport=self.recorder, timeout=10
        )
        self.metrics = Metrics()
        self.unusable: list[str] = []  # lines the share pass asked to have read again
        self.sync = CardSync(
            ledger=ledger,
            client=self.client,
            config=config,
            policy=policy(),
            write_lease=timedelta(seconds=25),
            metrics=self.metrics,
        )

    async def configure(self, card: dict[str, Any] | None, number: str = LINE) -> None:
        await sync_configured_lines(self.ledger, _schedule(card, number), clock.now())

    async def run(self) -> SyncReport:
        return await self.sync.run()

    async def share_pass(self) -> SharePass:
        share = SharePass(
            ledger=self.ledger,
            client=self.client,
            config=SharePassConfig(retry_backoff=timedelta(milliseconds=10)),
            policy=policy(),
            instance="test",
            metrics=self.metrics,
            on_card_unusable=self.unusable.append,
        )
        await share.run()
        return share

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def rig(ledger: Ledger, sim: SimHandle) -> AsyncIterator[Rig]:
    r = Rig(ledger, sim)
    yield r
    await r.close()


async def _line(ledger: Ledger, number: str = LINE) -> Any:
    async with ledger.read() as conn:
        return (await conn.execute(sa.select(lines).where(lines.c.number == number))).one()


async def _chats(ledger: Ledger) -> dict[str, Any]:
    async with ledger.read() as conn:
        return {r.chat_id: r for r in await conn.execute(sa.select(chats))}


async def _seed_chats(ledger: Ledger, sim: SimHandle, count: int) -> list[str]:
    """Chats with one outbound message, in the simulator and in the ledger alike."""
    async with sim.async_control() as control:
        ids = await control.seed(LINE, count)
    now = clock.now()
    return await add_chats_named(
        ledger, LINE, ids, now=now, first_outbound_at=now - MIN, pol=policy()
    )


async def _direct(sim: SimHandle, method: str, **kwargs: Any) -> httpx.Response:
    """A write that did not come from us (someone in Linq's dashboard, another tool)."""
    async with httpx.AsyncClient(
        base_url=sim.api_base, headers={"Authorization": f"Bearer {sim.token}"}
    ) as api:
        return await api.request(method, "/v3/contact_card", **kwargs)


def _max_in_any_window(times: list[datetime], window: timedelta = timedelta(minutes=10)) -> int:
    times = sorted(times)
    return max((sum(1 for t in times if s <= t < s + window) for s in times), default=0)


# -- create, activate, share ---------------------------------------------------------------


async def test_create_then_inactive_then_active_then_shares_start(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    ids = await _seed_chats(rig.ledger, sim, 3)
    await rig.configure(CARD)
    report = await rig.run()

    [post] = rig.recorder.writes()
    assert (post.method, post.status) == ("POST", 200)
    assert post.body == {"phone_number": LINE, **CARD}
    line = await _line(rig.ledger)
    assert line.card_state == CardState.pending
    assert line.card_written_at is not None
    assert report.plans[LINE].action == Action.awaiting_activation
    assert report.wake_at is not None
    assert report.wake_at - clock.now() <= timedelta(seconds=3)
    assert all(c.next_share_at is None for c in (await _chats(rig.ledger)).values())
    await rig.share_pass()
    async with sim.async_control() as control:
        assert await control.shares() == []

    at(T0 + timedelta(seconds=30))
    await rig.run()
    assert (await _line(rig.ledger)).card_state == CardState.pending

    at(T0 + timedelta(seconds=66))
    report = await rig.run()
    assert [(t.line, t.after) for t in report.transitions] == [(LINE, CardState.active)]
    line = await _line(rig.ledger)
    assert line.card_state == CardState.active
    assert line.card_written_at is None
    now = clock.now()
    assert all(c.next_share_at <= now for c in (await _chats(rig.ledger)).values())
    await rig.share_pass()
    async with sim.async_control() as control:
        shared = {s["chat_id"] for s in await control.shares()}
    assert shared == set(ids)
    assert len(rig.recorder.writes()) == 1
    assert rig.metrics.card_writes.labels(line=LINE, result="ok")._value.get() == 1


async def test_a_line_without_a_card_is_observed_and_never_written(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    ids = await _seed_chats(rig.ledger, sim, 2)
    await rig.configure(None)
    await rig.run()
    assert (await _line(rig.ledger)).card_state == CardState.absent
    await sim.async_control().faults(activation_delay=0)
    assert (await _direct(sim, "POST", json={"phone_number": LINE, "first_name": "X"})).is_success
    at(T0 + MIN)
    report = await rig.run()
    assert report.plans == {}
    assert (await _line(rig.ledger)).card_state == CardState.active
    rows = await _chats(rig.ledger)
    assert all(rows[i].next_share_at is not None for i in ids)

    async with sim.async_control() as control:
        await control.delete_card(LINE)
    at(T0 + 2 * MIN)
    await rig.run()
    assert (await _line(rig.ledger)).card_state == CardState.absent
    assert all(c.next_share_at is None for c in (await _chats(rig.ledger)).values())
    assert rig.recorder.writes() == []


# -- drift, 2014 ---------------------------------------------------------------------------


async def _in_sync(rig: Rig, sim: SimHandle, card: dict[str, Any]) -> None:
    async with sim.async_control() as control:
        await control.faults(activation_delay=0)
    await rig.configure(card)
    await rig.run()
    assert (await _line(rig.ledger)).card_state == CardState.active


async def test_drift_in_the_schedule_sends_one_patch_with_only_the_changed_fields(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    await _in_sync(rig, sim, CARD)
    steps = [
        ({**CARD, "last_name": "Support team"}, {"last_name": "Support team"}),
        (
            {**CARD, "last_name": "Support team", "first_name": "Acme Inc"},
            {"first_name": "Acme Inc"},
        ),
        (
            {
                "first_name": "Acme Inc",
                "last_name": "Support team",
                "image_url": "https://e.com/b.png",
            },
            {"image_url": "https://e.com/b.png"},
        ),
    ]
    for step, (card, body) in enumerate(steps, start=1):
        at(T0 + step * 11 * MIN)
        before = len(rig.recorder.writes())
        await rig.configure(card)
        await rig.run()
        await rig.run()  # a second run finds nothing left to write
        new = rig.recorder.writes()[before:]
        assert [(w.method, w.params, w.body, w.status) for w in new] == [
            ("PATCH", {"phone_number": LINE}, body, 200)
        ]
        line = await _line(rig.ledger)
        assert (line.card_first_name, line.card_last_name, line.card_image_url) == (
            card["first_name"],
            card["last_name"],
            card["image_url"],
        )


async def test_a_post_answered_2014_switches_to_a_patch_of_the_differing_fields(
    ledger: Ledger, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    raced: list[bool] = []

    async def someone_creates_it_first(request: httpx.Request) -> None:
        if request.method == "POST" and not raced:
            raced.append(True)
            created = await _direct(sim, "POST", json={"phone_number": LINE, "first_name": "Acme"})
            assert created.is_success
            # 2014 only once that card is active (a POST on a pending card is accepted).
            at(T0 + 2 * MIN)

    rig = Rig(ledger, sim, Recorder(before=someone_creates_it_first))
    try:
        await rig.configure(CARD)
        await rig.run()
        sent = [(s.method, s.params, s.status) for s in rig.recorder.sent]
        assert sent == [
            ("GET", {}, 200),
            ("POST", {}, 409),
            ("GET", {"phone_number": LINE}, 200),
            ("PATCH", {"phone_number": LINE}, 200),
        ]
        patch = rig.recorder.sent[-1]
        assert patch.body == {"last_name": "Support", "image_url": "https://example.com/a.png"}
        line = await _line(ledger)
        assert (line.card_first_name, line.card_last_name) == ("Acme", "Support")
        assert line.last_error is None
        assert len(json.loads(line.card_write_log)) == 2  # the refused POST counted too
    finally:
        await rig.close()


# -- limits and faults ---------------------------------------------------------------------


async def test_429_waits_retry_after(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    await rig.configure(CARD)
    # Three writes from elsewhere spend the number's budget at Linq, not in our ledger.
    for minute, (method, kwargs) in enumerate(
        [
            ("POST", {"json": {"phone_number": LINE, "first_name": "Other"}}),
            ("PATCH", {"params": {"phone_number": LINE}, "json": {"first_name": "Other 2"}}),
            ("PATCH", {"params": {"phone_number": LINE}, "json": {"first_name": "Other 3"}}),
        ]
    ):
        # A card is PATCHed once active (the activation delay is a minute).
        at(T0 + minute * (MIN + timedelta(seconds=10)))
        assert (await _direct(sim, method, **kwargs)).is_success
    at(T0 + 3 * MIN)
    report = await rig.run()
    [refused] = rig.recorder.writes()
    assert refused.status == 429
    assert report.writes[0].result == "rate_limited"
    line = await _line(rig.ledger)
    free_at = T0 + 10 * MIN
    assert abs((line.card_next_write_at - free_at).total_seconds()) < 5
    assert "429" in line.last_error

    at(free_at - timedelta(seconds=10))
    report = await rig.run()
    assert len(rig.recorder.writes()) == 1
    assert report.plans[LINE].action == Action.wait_budget
    [status] = await card_status(rig.ledger, CARDS, clock.now())
    assert status["next_write_at"] == line.card_next_write_at

    at(free_at + timedelta(seconds=6))
    await rig.run()
    _, second = rig.recorder.writes()
    assert second.status == 200
    assert second.at >= line.card_next_write_at
    assert (await _line(rig.ledger)).last_error is None


async def test_4004_waits_at_least_ten_minutes_and_longer_after_each(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    async with sim.async_control() as control:
        await control.faults(card_4004_next=2, activation_delay=0)
    await rig.configure(CARD)
    await rig.run()
    [first] = rig.recorder.writes()
    assert (first.method, first.status) == ("POST", 503)
    line = await _line(rig.ledger)
    assert line.card_next_write_at - first.at >= timedelta(minutes=10)
    assert line.card_write_failures == 1
    # 4004 stored the card but left it inactive: GET does not list it, no sharing meanwhile.
    assert line.card_state == CardState.absent

    at(T0 + 9 * MIN + timedelta(seconds=50))
    await rig.run()
    assert len(rig.recorder.writes()) == 1

    at(T0 + 10 * MIN + timedelta(seconds=5))
    await rig.run()
    second = rig.recorder.writes()[1]
    # Still not active: set up again with POST (a PATCH needs an active card).
    assert (second.method, second.body, second.status) == (
        "POST",
        {"phone_number": LINE, **CARD},
        503,
    )
    line = await _line(rig.ledger)
    assert line.card_next_write_at - second.at >= timedelta(minutes=20)

    at(T0 + 29 * MIN)
    await rig.run()
    assert len(rig.recorder.writes()) == 2

    at(T0 + 31 * MIN)
    await rig.run()
    third = rig.recorder.writes()[2]
    assert third.status == 200
    line = await _line(rig.ledger)
    assert line.card_state == CardState.active
    assert line.card_write_failures == 0
    assert rig.metrics.card_writes.labels(line=LINE, result="throttled")._value.get() == 2


async def test_2022_is_retried_later(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    async with sim.async_control() as control:
        await control.faults(card_2022_next=1, activation_delay=0)
    await rig.configure(CARD)
    await rig.run()
    [failed] = rig.recorder.writes()
    assert (failed.method, failed.status) == ("POST", 500)
    line = await _line(rig.ledger)
    assert line.card_state == CardState.absent
    assert "2022" in line.last_error
    waited = line.card_next_write_at - failed.at  # counted from the answer
    assert CARDS.retry_wait <= waited < CARDS.retry_wait + timedelta(seconds=2)

    at(T0 + timedelta(seconds=40))
    await rig.run()
    assert len(rig.recorder.writes()) == 1

    at(T0 + timedelta(seconds=65))
    await rig.run()
    retried = rig.recorder.writes()[1]
    assert (retried.method, retried.body, retried.status) == (
        "POST",
        {"phone_number": LINE, **CARD},
        200,
    )
    line = await _line(rig.ledger)
    assert line.card_state == CardState.active
    assert line.last_error is None


async def test_a_refused_card_is_not_retried_until_the_schedule_changes_it(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    async with sim.async_control() as control:
        await control.faults(lines=["+14155550999"], activation_delay=0)
    await rig.configure(CARD)
    await rig.run()
    [refused] = rig.recorder.writes()
    assert refused.status == 403
    line = await _line(rig.ledger)
    assert "2005" in line.last_error
    assert "not retried until the card in the schedule changes" in line.last_error
    for hours in (1, 5, 48):
        at(T0 + timedelta(hours=hours))
        report = await rig.run()
        assert report.plans[LINE].action == Action.blocked
    assert len(rig.recorder.writes()) == 1
    [status] = await card_status(rig.ledger, CARDS, clock.now())
    assert status["write_blocked"] is True
    assert status["next_write_at"] is None

    async with sim.async_control() as control:
        await control.faults(lines=None)
    await rig.configure({**CARD, "first_name": "Acme Corp"})
    await rig.run()
    assert rig.recorder.writes()[-1].status == 200
    assert (await _line(rig.ledger)).card_state == CardState.active


async def test_activation_is_given_up_loudly_after_the_timeout(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    async with sim.async_control() as control:
        await control.faults(activation_delay=3600)
    await rig.configure(CARD)
    await rig.run()
    at(T0 + 2 * MIN)
    report = await rig.run()
    assert report.plans[LINE].action == Action.awaiting_activation
    at(T0 + 5 * MIN + timedelta(seconds=5))
    with capture_logs() as logs:
        report = await rig.run()
    assert report.plans[LINE].action == Action.activation_timeout
    [event] = [e for e in logs if e["event"] == "card.activation_timeout"]
    assert event["line"] == LINE
    assert event["log_level"] == "error"
    line = await _line(rig.ledger)
    assert "still not active after 5m" in line.last_error
    assert line.card_written_at is None
    at(T0 + 7 * MIN)
    report = await rig.run()
    assert report.plans[LINE].action == Action.pending
    assert report.wake_at is None
    assert len(rig.recorder.writes()) == 1
    assert rig.metrics.card_activation_timeouts.labels(line=LINE)._value.get() == 1


# -- budget across restarts and replicas ---------------------------------------------------


async def test_five_rapid_changes_never_exceed_three_writes_in_ten_minutes_across_a_restart(
    ledger_url: str, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    async with sim.async_control() as control:
        await control.faults(activation_delay=5)
    names = ["Acme 1", "Acme 2", "Acme 3", "Acme 4", "Acme 5"]
    sent: list[Sent] = []
    rig = Rig(Ledger(create_engine(ledger_url, pool_size=2)), sim)
    try:
        for i, name in enumerate(names):
            at(T0 + i * MIN)
            if i == 3:
                # A restart: nothing survives but the ledger.
                sent += rig.recorder.sent
                await rig.close()
                await rig.ledger.dispose()
                rig = Rig(Ledger(create_engine(ledger_url, pool_size=2)), sim)
            await rig.configure({"first_name": name})
            await rig.run()
        for minute in range(5, 25):
            at(T0 + minute * MIN)
            await rig.run()
        sent += rig.recorder.sent
        writes = [s for s in sent if s.method in WRITES and s.path.endswith("/contact_card")]
        assert [s.status for s in writes] == [200] * len(writes), "Linq refused a write"
        assert _max_in_any_window([w.at for w in writes]) <= 3
        assert len(writes) == 4  # three at once, the last two changes folded into one
        assert writes[-1].body == {"first_name": "Acme 5"}
        assert writes[-1].at >= writes[0].at + timedelta(minutes=10)
        line = await _line(rig.ledger)
        assert line.card_first_name == "Acme 5"
        assert line.card_state == CardState.active
    finally:
        await rig.close()
        await rig.ledger.dispose()


async def test_two_replicas_syncing_at_once_write_the_card_once(
    ledger_url: str, sim: SimHandle
) -> None:
    rigs = [Rig(Ledger(create_engine(ledger_url, pool_size=2)), sim) for _ in range(2)]
    try:
        await rigs[0].configure(CARD)
        await asyncio.gather(*(r.run() for r in rigs))
        writes = [w for r in rigs for w in r.recorder.writes()]
        assert [(w.method, w.status) for w in writes] == [("POST", 200)]
        await asyncio.gather(*(r.run() for r in rigs))
        assert len([w for r in rigs for w in r.recorder.writes()]) == 1
    finally:
        for r in rigs:
            await r.close()
            await r.ledger.dispose()


# -- deleted cards, 2012, pause ------------------------------------------------------------


async def test_a_deleted_card_stops_the_line_and_its_re_creation_resumes_it_without_double_shares(
    rig: Rig, sim: SimHandle, at: Callable[[datetime], None]
) -> None:
    await _in_sync(rig, sim, CARD)
    first = await _seed_chats(rig.ledger, sim, 3)
    await rig.share_pass()
    async with sim.async_control() as control:
        assert {s["chat_id"] for s in await control.shares()} == set(first)
        await control.faults(activation_delay=60)
        await control.delete_card(LINE)

    at(T0 + 10 * MIN)
    late = await _seed_chats(rig.ledger, sim, 2)
    # The share pass meets the missing card before the card job does: 2012.
    await rig.share_pass()
    async with sim.async_control() as control:
        calls = await control.calls()
    late_codes = [c["code"] for c in calls if c["chat_id"] in late]
    assert late_codes and set(late_codes) == {2012}
    assert rig.unusable == [LINE]  # once for the line, however many of its chats were refused
    line = await _line(rig.ledger)
    assert line.card_state == CardState.unknown  # not active; pending or gone: read again
    rows = await _chats(rig.ledger)
    assert all(rows[c].last_shared_at is None and rows[c].share_count == 0 for c in late)
    assert all(r.next_share_at is None for r in rows.values())

    report = await rig.run()  # sees it gone, creates it again: inactive for a minute
    assert [(w.action, w.result) for w in report.writes] == [("create", "ok")]
    assert (await _line(rig.ledger)).card_state == CardState.pending
    await rig.share_pass()
    async with sim.async_control() as control:
        assert len(await control.calls()) == len(calls)

    at(T0 + 11 * MIN + timedelta(seconds=5))
    await rig.run()
    assert (await _line(rig.ledger)).card_state == CardState.active
    await rig.share_pass()
    async with sim.async_control() as control:
        shares = await control.shares()
    per_chat: dict[str, int] = {}
    for share in shares:
        per_chat[share["chat_id"]] = per_chat.get(share["chat_id"], 0) + 1
    assert per_chat == dict.fromkeys(first + late, 1)
    assert rig.unusable == [LINE]


async def test_pausing_a_line_stops_its_chats_and_resuming_brings_them_back(
    rig: Rig, sim: SimHandle
) -> None:
    await _in_sync(rig, sim, CARD)
    ids = await _seed_chats(rig.ledger, sim, 3)
    assert await set_line_paused(rig.ledger, LINE, True, clock.now()) == 3
    assert all(c.next_share_at is None for c in (await _chats(rig.ledger)).values())
    await rig.share_pass()
    async with sim.async_control() as control:
        assert await control.shares() == []
    [status] = await card_status(rig.ledger, CARDS, clock.now())
    assert status["paused"] is True

    assert await set_line_paused(rig.ledger, LINE, False, clock.now()) == 3
    await rig.share_pass()
    async with sim.async_control() as control:
        assert {s["chat_id"] for s in await control.shares()} == set(ids)


async def test_a_read_sent_before_a_write_does_not_undo_what_the_write_recorded(
    rig: Rig, sim: SimHandle
) -> None:
    await _in_sync(rig, sim, CARD)
    line = await _line(rig.ledger)
    [written] = json.loads(line.card_write_log)
    stale = ContactCard(phone_number=LINE, first_name="Old", is_active=False)
    sent_before = datetime.fromisoformat(written) - timedelta(seconds=1)
    changed = await record_observed_cards(rig.ledger, [stale], clock.now(), seen_at=sent_before)
    assert changed == []
    line = await _line(rig.ledger)
    assert (line.card_first_name, line.card_state) == ("Acme", CardState.active)

    changed = await record_observed_cards(rig.ledger, [stale], clock.now(), seen_at=clock.now())
    assert [(t.before, t.after) for t in changed] == [(CardState.active, CardState.pending)]
    assert (await _line(rig.ledger)).card_first_name == "Old"
