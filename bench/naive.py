"""The naive alternatives, side by side with share-scheduler, on the same machine and run.

    python -m bench.naive [--sizes 10000,100000]

(a) One APScheduler job per chat, in APScheduler's SQLAlchemy job store (a daily trigger per
    chat): time to add the jobs, cost of one scheduler wake-up with 1% of them due, and
    the process's memory.
(b) A sequential "cron script": load every chat, evaluate the rule for each in Python, share
    the due ones one at a time.
(c) share-scheduler: one batch of the due query (select + claim), and a full share pass over
    the same 1% due chats against the same simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pickle
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp

from bench.common import TOKEN, fill_ledger, ledger_url, open_policy, seed, simulator, table
from bench.due_query import measure
from bench.share_pass import daemon_pass
from scheduler import clock
from scheduler.core.rule import next_share_at
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.facts import chat_facts, chats, line_facts, select_chats_with_line


def share_chat(chat_id: str) -> None:
    """The job each chat would run; never called in this benchmark."""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def apscheduler_per_chat(size: int, timed_adds: int) -> list[object]:
    """``timed_adds`` jobs go through add_job and are timed (one transaction each, as in real
    use); the rest are bulk-inserted as the same pickled job state, to reach ``size`` fast."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-aps-"))
    store = SQLAlchemyJobStore(url=f"sqlite:///{workdir / 'jobs.db'}")
    scheduler = BackgroundScheduler(
        jobstores={"default": store}, executors={"default": ThreadPoolExecutor(4)}, timezone=UTC
    )
    scheduler.start(paused=True)
    now = datetime.now(UTC)
    before = rss_mb()

    def start_of(i: int) -> datetime:
        return now - timedelta(minutes=1) if i % 100 == 0 else now + timedelta(hours=6)

    timed = min(size, timed_adds)
    t0 = time.perf_counter()
    for i in range(timed):
        scheduler.add_job(
            share_chat,
            IntervalTrigger(days=1, start_date=start_of(i)),
            args=[f"chat-{i}"],
            id=f"chat-{i}",
            misfire_grace_time=None,
            coalesce=True,
        )
    add = (time.perf_counter() - t0) * size / timed
    template = scheduler.get_job("chat-1").__getstate__()
    rows = []
    for i in range(timed, size):
        state = dict(template, id=f"chat-{i}", args=(f"chat-{i}",), next_run_time=start_of(i))
        state["trigger"] = IntervalTrigger(days=1, start_date=start_of(i))
        rows.append(
            {
                "id": state["id"],
                "next_run_time": datetime_to_utc_timestamp(start_of(i)),
                "job_state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL),
            }
        )
    if rows:
        with store.engine.begin() as conn:
            conn.execute(store.jobs_t.insert(), rows)
    # One wake-up: the scheduler loads the due jobs, submits them and reschedules each. The
    # scheduler thread stays asleep (it was started paused); the wake-up runs here, timed.
    scheduler.state = STATE_RUNNING
    t0 = time.perf_counter()
    scheduler._process_jobs()
    wake = time.perf_counter() - t0
    due_left = sum(1 for job in scheduler.get_jobs() if job.next_run_time <= datetime.now(UTC))
    scheduler.shutdown(wait=True)
    note = "" if timed == size else f", add extrapolated from {timed}"
    return [f"APScheduler job per chat ({size}{note})", add, wake, rss_mb() - before, due_left]


async def cron_script(url: str, api_base: str) -> float:
    """Load everything, decide in Python, share one at a time: no index, no claims."""
    ledger = Ledger(create_engine(url, pool_size=2))
    policy = open_policy(clock.now())
    async with httpx.AsyncClient(
        base_url=api_base, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        t0 = time.perf_counter()
        now = clock.now()
        async with ledger.read() as conn:
            rows = (await conn.execute(select_chats_with_line())).all()
        for row in rows:
            facts = line_facts(row.line_card_state, row.line_paused, row.line_timezone)
            if next_share_at(chat_facts(row), facts, policy, now) == now:
                resp = await client.post(f"/v3/chats/{row.chat_id}/share_contact_card")
                resp.raise_for_status()
                async with ledger.write() as conn:
                    await conn.execute(
                        sa.update(chats)
                        .where(chats.c.chat_id == row.chat_id)
                        .values(last_shared_at=now, share_count=row.share_count + 1)
                    )
        seconds = time.perf_counter() - t0
    await ledger.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timed-adds", type=int, default=5000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    rows: list[list[object]] = []
    with simulator() as sim:
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(apscheduler_per_chat(size, args.timed_adds))
            due_count = size // 100
            for contender in ("cron", "ours"):
                with ledger_url("sqlite") as url:
                    due = seed(sim, due_count)
                    idle = [f"idle-{uuid.UUID(int=i).hex}" for i in range(size - due_count)]
                    fill_ledger(url, due + idle, set(due), clock.now())
                    if contender == "cron":
                        seconds = asyncio.run(cron_script(url, sim.api_base))
                        rows.append([f"cron script, sequential ({size})", "-", seconds, "-", "-"])
                    else:
                        claims = asyncio.run(measure(url, 5, 500)).claims
                        batch = sorted(claims)[2]
                        seconds, _shared = asyncio.run(
                            daemon_pass(url, sim.api_base, args.concurrency)
                        )
                        rows.append([f"share-scheduler pass ({size})", "-", seconds, "-", "-"])
                        rows.append(
                            [f"share-scheduler due-query batch ({size})", "-", batch, "-", "-"]
                        )
    table(
        "naive baselines vs share-scheduler (1% due, zero-latency simulator, SQLite)",
        ["contender", "add s", "wake-up / pass s", "memory MB", "still due"],
        rows,
    )
    print(
        "\nsummary: see the table; 'wake-up / pass' is one scheduler wake-up for APScheduler, "
        "the whole run over the due chats for the others"
    )


if __name__ == "__main__":
    main()
