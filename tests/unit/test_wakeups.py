"""Wake-ups of an interval job, with a real AsyncIOScheduler on the running loop."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.wakeups import Waker

bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("bound", default=None)


class Job:
    """Counts its runs; the first one takes a while and asks for another run meanwhile."""

    def __init__(self) -> None:
        self.runs: list[str | None] = []
        self.waker: Waker | None = None
        self.second = asyncio.Event()

    async def run(self) -> None:
        self.runs.append(bound.get())
        if len(self.runs) == 1:
            assert self.waker is not None
            # Asked for while this run is still going: APScheduler alone would skip it.
            self.waker.request(datetime.now(UTC))
            await asyncio.sleep(0.3)
        else:
            self.second.set()


async def _scheduler(job: Job, *, first_run: bool) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    job.waker = Waker(scheduler, "job")
    scheduler.add_job(
        job.run,
        IntervalTrigger(hours=1),
        id="job",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC) if first_run else None,
    )
    scheduler.start()
    await asyncio.sleep(0.1)  # past the start's own first look at the jobs
    return scheduler


async def test_a_wake_up_asked_for_during_a_run_runs_the_job_once_that_run_ends() -> None:
    job = Job()
    scheduler = await _scheduler(job, first_run=True)
    try:
        await asyncio.wait_for(job.second.wait(), timeout=10)
        assert len(job.runs) == 2
        next_run = scheduler.get_job("job").next_run_time
        assert next_run > datetime.now(UTC) + timedelta(minutes=59)  # back on its interval
    finally:
        scheduler.shutdown(wait=False)


async def test_a_wake_up_between_runs_runs_the_job_without_the_callers_context() -> None:
    job = Job()
    job.runs.append("before")  # as if the long first run were over
    scheduler = await _scheduler(job, first_run=False)
    assert job.waker is not None
    try:
        token = bound.set("pass-1234")
        job.waker.request(datetime.now(UTC))
        bound.reset(token)
        await asyncio.wait_for(job.second.wait(), timeout=10)
        assert job.runs == ["before", None]
    finally:
        scheduler.shutdown(wait=False)


async def test_the_earliest_of_several_requests_wins_and_a_later_one_never_delays() -> None:
    job = Job()
    job.runs.append("before")
    scheduler = await _scheduler(job, first_run=False)
    assert job.waker is not None
    try:
        soon = datetime.now(UTC) + timedelta(minutes=5)
        job.waker.request(soon)
        job.waker.request(soon + timedelta(minutes=10))
        assert scheduler.get_job("job").next_run_time == soon
    finally:
        scheduler.shutdown(wait=False)
