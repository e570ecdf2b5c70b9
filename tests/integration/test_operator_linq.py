"""``share now`` and ``doctor`` against the simulator over loopback HTTP, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from scheduler import clock
from scheduler.config import Schedule, Secret, parse_schedule
from scheduler.core.rule import Policy
from scheduler.doctor import run_doctor
from scheduler.errors import NotFound
from scheduler.ledger.claims import attempts, claim_batch
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats
from scheduler.linq.client import LinqClient
from scheduler.share.manual import ManualShare, share_now
from scheduler.sim.settings import SimSettings
from scheduler.testing import SimHandle
from tests import factories
from tests.factories import add_line

TOKEN = "op-test-token-4b1d"
HOOK = "op-test-hook-secret-9c2e"
L1 = "+14155550100"
L2 = "+14155550111"


@pytest.fixture(scope="module")
def sim_settings() -> SimSettings:
    return SimSettings(token=TOKEN, activation_delay=0)


@pytest.fixture
def sim(sim: SimHandle, clock_file: Path) -> SimHandle:
    clock.set_clock_file(clock_file, datetime.now(UTC))
    with httpx.Client(base_url=sim.api_base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        api.post(
            "/v3/contact_card", json={"phone_number": L1, "first_name": "Acme"}
        ).raise_for_status()
    return sim


def around_now() -> Policy:
    """A UTC window from an hour ago to two hours ahead, whenever the test runs."""
    now = clock.now()
    return Policy(
        timezone="UTC",
        window_start=(now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        window_end=(now + timedelta(hours=2)).time().replace(second=0, microsecond=0),
        min_interval=timedelta(hours=1),
        stop_after_inactive_days=None,
    )


def schedule_for(sim: SimHandle, database_url: str) -> Schedule:
    return parse_schedule(
        {"linq": {"base_url": sim.api_base}, "database": {"url": database_url}}, "test"
    )


async def add_chat(ledger: Ledger, sim: SimHandle, to: str, status: str = "active") -> str:
    """A chat created on the simulator, and in the ledger as the shared factory makes one."""
    chat_id = str(sim.control().create_chat(L1, [to])["chat"]["id"])
    await factories.add_chat(ledger, chat_id, L1, to, now=clock.now(), status=status)
    return chat_id


async def attempt_rows(ledger: Ledger, chat_id: str) -> list[Any]:
    async with ledger.read() as conn:
        return list(
            await conn.execute(
                sa.select(attempts).where(attempts.c.chat_id == chat_id).order_by(attempts.c.id)
            )
        )


async def test_share_now_refuses_a_second_share_the_same_day_unless_forced(
    ledger: Ledger, ledger_url: str, sim: SimHandle, clock_file: Path
) -> None:
    pol = around_now()
    schedule = schedule_for(sim, ledger_url)
    await add_line(ledger, L1, clock.now())
    chat = await add_chat(ledger, sim, "+12125550101")
    opted = await add_chat(ledger, sim, "+12125550102", status="opted_out")
    paused = await add_chat(ledger, sim, "+12125550103", status="paused")
    control = sim.control()

    async def share(chat_id: str, force: bool = False) -> ManualShare:
        async with LinqClient.from_config(schedule.linq, Secret(TOKEN, "test")) as client:
            return await share_now(ledger, client, schedule, pol, chat_id, force=force)

    first = await share(chat)
    assert (first.outcome, first.refused, first.forced) == ("shared", None, False)
    assert len(control.shares(chat)) == 1

    second = await share(chat)
    assert (second.outcome, second.refused) == (None, "already_shared_today")
    assert "--force" in second.detail
    assert len(control.shares(chat)) == 1, "a refused share never reaches Linq"

    # Linq allows one share per chat per 5 minutes; the operator forces one 6 minutes later.
    clock.set_clock_file(clock_file, clock.now() + timedelta(minutes=6))
    forced = await share(chat, force=True)
    assert (forced.outcome, forced.forced) == ("shared", True)
    assert len(control.shares(chat)) == 2
    rows = await attempt_rows(ledger, chat)
    assert [(r.outcome, r.forced) for r in rows] == [("shared", False), ("shared", True)]
    assert rows[1].instance.startswith("cli-")
    async with ledger.read() as conn:
        count = (
            await conn.execute(sa.select(chats.c.share_count).where(chats.c.chat_id == chat))
        ).scalar_one()
    assert count == 2

    refused = await share(opted, force=True)
    assert refused.refused == "opted_out", "an opt-out is never overridden"
    assert control.calls(opted) == []

    not_forced = await share(paused)
    assert not_forced.refused == "chat_paused"
    assert (await share(paused, force=True)).outcome == "shared"

    # A live claim of another process (a pass in flight) is never doubled.
    fresh = await add_chat(ledger, sim, "+12125550104")
    await claim_batch(
        ledger,
        now=clock.now(),
        limit=1,
        instance="daemon-a",
        lease=timedelta(minutes=5),
        policy=pol,
        chat_ids=[fresh],
    )
    in_flight = await share(fresh, force=True)
    assert in_flight.refused == "in_flight"
    assert "daemon-a" in in_flight.detail
    assert control.calls(fresh) == []

    with pytest.raises(NotFound, match="no chat 'missing'"):
        await share("missing")


def write_config(path: Path, sim: SimHandle, database_url: str, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "linq": {"base_url": sim.api_base},
        "database": {"url": database_url},
        "lines": [{"number": L1, "card": {"first_name": "Acme"}}, {"number": L2}],
    }
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    return path


def verdicts(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


async def test_doctor_one_verdict_per_check(
    ledger: Ledger, ledger_url: str, sim: SimHandle, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "schedule.yaml", sim, ledger_url)
    env = {"LINQ_API_KEY": TOKEN, "LINQ_WEBHOOK_SECRET": HOOK}

    checks = await run_doctor(config, env=env)
    assert verdicts(checks) == {
        "config": "ok",
        "database": "ok",
        "schema": "ok",
        "token": "ok",
        f"card {L1}": "ok",
        f"card {L2}": "fail",
        "webhook secret": "ok",
        "clock": "ok",
    }
    detail = {c.name: c.detail for c in checks}
    assert "nothing on this line is shared" in detail[f"card {L2}"]
    assert "Linq's clock" in detail["clock"]
    for c in checks:
        assert TOKEN not in c.detail and HOOK not in c.detail

    bad_token = await run_doctor(config, env={**env, "LINQ_API_KEY": "wrong-token-123"})
    v = verdicts(bad_token)
    assert (v["token"], v["cards"]) == ("fail", "skip")
    assert "rejected" in next(c.detail for c in bad_token if c.name == "token")
    assert "wrong-token-123" not in str([c.detail for c in bad_token])

    no_secret = verdicts(await run_doctor(config, env={"LINQ_API_KEY": TOKEN}))
    assert no_secret["webhook secret"] == "fail"
    assert no_secret["token"] == "ok"

    missing = write_config(tmp_path / "missing.yaml", sim, f"sqlite:///{tmp_path / 'no.db'}")
    absent = await run_doctor(missing, env=env)
    assert (verdicts(absent)["database"], verdicts(absent)["schema"]) == ("fail", "skip")
    assert f"no ledger at {tmp_path / 'no.db'}" in next(
        c.detail for c in absent if c.name == "database"
    )
    assert not (tmp_path / "no.db").exists(), "doctor created the ledger it checks"

    (tmp_path / "empty.db").write_bytes(b"")  # an empty SQLite file: no schema yet
    empty = write_config(tmp_path / "empty.yaml", sim, f"sqlite:///{tmp_path / 'empty.db'}")
    behind = verdicts(await run_doctor(empty, env=env))
    assert (behind["database"], behind["schema"]) == ("ok", "fail")

    broken = tmp_path / "broken.yaml"
    broken.write_text("sharing:\n  timezone: Mars/Base\n")
    result = await run_doctor(broken, env=env)
    assert result[0].name == "config" and result[0].status == "fail"
    assert "sharing.timezone" in result[0].detail
    assert {c.status for c in result[1:]} == {"skip"}
