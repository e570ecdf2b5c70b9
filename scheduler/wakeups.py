"""Running an interval job sooner than its trigger, without losing the request mid-run.

APScheduler skips a run that comes due while the job is still running (``max_instances=1``)
and moves on to the trigger's next time. A wake-up asked for by the job itself (an activation
poll 200 ms on) or by an event that arrives mid-run (a card webhook, a share answered 2012)
would then wait a whole interval. :class:`Waker` keeps the requests made while the job runs
and applies the earliest when the run ends.
"""

from __future__ import annotations

import contextvars
from datetime import UTC, datetime

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.schedulers.base import BaseScheduler


class Waker:
    """Wake-ups of one job of ``scheduler``, in the scheduler's (real) time."""

    def __init__(self, scheduler: BaseScheduler, job_id: str) -> None:
        self.scheduler = scheduler
        self.job_id = job_id
        self.running = False
        self.pending: datetime | None = None
        scheduler.add_listener(
            self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
        )

    def request(self, run_at: datetime) -> None:
        """Run the job at ``run_at`` if that is sooner than its next run."""
        if self.running:
            if self.pending is None or run_at < self.pending:
                self.pending = run_at
            return
        self._apply(run_at)

    def _apply(self, run_at: datetime) -> None:
        job = self.scheduler.get_job(self.job_id)
        if job is None:
            return
        # Never in the past: a run more than its misfire grace late would be dropped.
        run_at = max(run_at, datetime.now(UTC))
        if job.next_run_time is None or run_at < job.next_run_time:
            # In an empty context: the run's task would otherwise inherit the caller's bound
            # log fields (a pass id, a webhook's trace id).
            contextvars.Context().run(job.modify, next_run_time=run_at)

    def _on_event(self, event: JobEvent) -> None:
        if event.job_id != self.job_id:
            return
        if event.code == EVENT_JOB_SUBMITTED:
            self.running = True
            return
        # Dispatched once APScheduler no longer counts the run: a wake-up now is not skipped.
        self.running = False
        pending, self.pending = self.pending, None
        if pending is not None:
            self._apply(pending)
