"""The job table: what APScheduler runs, and how often.

The ledger is the source of truth; APScheduler only wakes the sweeps (share pass, card check,
pruning, blocked handles, backfill), each one job with one instance at a time. The card check
can also be woken sooner (a card webhook, a share answered 2012, an activation poll).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler import clock
from scheduler.cards.sync import CardSync
from scheduler.config import Schedule
from scheduler.daemon.health import Health
from scheduler.daemon.settings import Settings
from scheduler.errors import LedgerUnavailable, LinqError, Unauthorized
from scheduler.http.gauges import publish_ledger_gauges
from scheduler.ingest.backfill import scheduled_backfill
from scheduler.ingest.blocked import refresh_blocked_handles
from scheduler.ledger.engine import Ledger
from scheduler.ledger.gauges import count_due, read_ledger_gauges
from scheduler.ledger.ingest import prune_events
from scheduler.ledger.retention import prune_attempts
from scheduler.ledger.stats import report_zone
from scheduler.linq.client import LinqClient
from scheduler.metrics import Metrics
from scheduler.share.share_pass import SharePass
from scheduler.wakeups import Waker

log = structlog.get_logger("scheduler.daemon")

SHARE_JOB = "share_pass"
CARD_CHECK_JOB = "card_check"
BACKFILL_JOB = "backfill"


class CardWakeups:
    """Requests to run the card check sooner than its interval."""

    def __init__(self, scheduler: AsyncIOScheduler) -> None:
        self.waker = Waker(scheduler, CARD_CHECK_JOB)

    def card_event(self, number: str) -> None:
        self.waker.request(datetime.now(UTC))

    def card_unusable(self, number: str) -> None:
        # A share answered 2012 (its outcome is committed): read the card now. If it was
        # deleted and the schedule declares it, the card job creates it again within its write
        # budget. At most once per line per pass, so an API that disagrees with itself costs
        # one read per pass.
        log.info("card.recheck_requested", line=number, reason="share_refused")
        self.card_event(number)

    def card_event_at(self, at: datetime | None) -> None:
        """Run the card job again at ``at`` (ledger time) if that is before its next run."""
        if at is not None:
            self.waker.request(datetime.now(UTC) + max(at - clock.now(), timedelta(0)))


class Jobs:
    def __init__(
        self,
        *,
        scheduler: AsyncIOScheduler,
        wakeups: CardWakeups,
        settings: Settings,
        ledger: Ledger,
        client: LinqClient,
        metrics: Metrics,
        share_pass: SharePass,
        card_sync: CardSync,
        health: Health,
        stopping: asyncio.Event,
        track: Callable[[asyncio.Task[Any]], Callable[[], None]],
    ) -> None:
        self.scheduler = scheduler
        self.wakeups = wakeups
        self.settings = settings
        self.ledger = ledger
        self.client = client
        self.metrics = metrics
        self.share_pass = share_pass
        self.card_sync = card_sync
        self.health = health
        self.stopping = stopping
        # Registers a task to cancel on shutdown; returns the call that forgets it.
        self.track = track
        # The runs under way, awaited on shutdown.
        self.pass_task: asyncio.Task[Any] | None = None
        self.card_task: asyncio.Task[Any] | None = None

    # -- the table -------------------------------------------------------------------------

    def start(self, start: datetime) -> None:
        cfg = self.settings.schedule
        self._add(
            self.card_job,
            CARD_CHECK_JOB,
            cfg.cards.check_interval,
            next_run_time=start,
        )
        # The first pass runs at once: it reads the ledger (the card states the last card
        # check recorded), not the card check that starts beside it.
        self._add(
            self.share_job,
            SHARE_JOB,
            cfg.share_pass.interval,
            misfire_grace_time=None,
            next_run_time=start,
        )
        # Soon after start too: a daemon restarted daily would otherwise never prune.
        self._add(
            self.prune_job, "prune", timedelta(hours=24), next_run_time=start + timedelta(minutes=1)
        )
        self._add(
            self.blocked_handles_job,
            "blocked_handles",
            timedelta(hours=24),
            next_run_time=start + timedelta(seconds=1),
        )
        every = cfg.backfill.interval
        self._add(
            self.backfill_job,
            BACKFILL_JOB,
            every,
            next_run_time=start + (timedelta(seconds=5) if cfg.backfill.at_start else every),
        )
        self.scheduler.start()

    def _add(
        self,
        job: Callable[[], Coroutine[Any, Any, None]],
        job_id: str,
        every: timedelta,
        **options: Any,
    ) -> None:
        self.scheduler.add_job(
            job,
            IntervalTrigger(seconds=every.total_seconds()),
            id=job_id,
            max_instances=1,
            coalesce=True,
            **options,
        )

    def reschedule(self, old: Schedule, new: Schedule) -> None:
        """Apply changed intervals of a reloaded schedule."""
        for job_id, before, after in (
            (SHARE_JOB, old.share_pass.interval, new.share_pass.interval),
            (CARD_CHECK_JOB, old.cards.check_interval, new.cards.check_interval),
            (BACKFILL_JOB, old.backfill.interval, new.backfill.interval),
        ):
            if before != after:
                self.scheduler.reschedule_job(
                    job_id, trigger=IntervalTrigger(seconds=after.total_seconds())
                )

    # -- the jobs --------------------------------------------------------------------------

    async def share_job(self) -> None:
        if self.stopping.is_set():
            return
        self.pass_task = asyncio.current_task()
        try:
            await self.share_pass.run()
            self.metrics.due_chats.set(await count_due(self.ledger, clock.now()))
        except LedgerUnavailable as exc:
            log.warning("pass.skipped", reason="ledger_unavailable", error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pass.crashed")
        finally:
            self.pass_task = None

    async def card_job(self) -> None:
        if self.stopping.is_set():
            return
        # Awaited on shutdown: abandoned mid-transaction, its connection would outlive the
        # ledger (on SQLite a driver thread then keeps the process from exiting).
        self.card_task = asyncio.current_task()
        try:
            report = await self.card_sync.run()
            if report.read_ok:
                self.health.token_accepted()
            self.wakeups.card_event_at(report.wake_at)
            await self.refresh_gauges()
        except LedgerUnavailable as exc:
            log.warning("card.check_skipped", reason="ledger_unavailable", error=str(exc))
        except Unauthorized as exc:
            self.health.token_error = str(exc)
            log.error("linq.unauthorized", error=str(exc))
        finally:
            self.card_task = None

    async def prune_job(self) -> None:
        schedule = self.settings.schedule
        now = clock.now()
        try:
            removed = await prune_events(self.ledger, now - schedule.webhooks.event_retention)
            log.info("prune.webhook_events", removed=removed)
            retention = schedule.share_pass.attempt_retention
            if retention is not None:
                removed = await prune_attempts(self.ledger, now - retention)
                log.info("prune.share_attempts", removed=removed)
        except LedgerUnavailable as exc:
            log.warning("prune.skipped", error=str(exc))

    async def backfill_job(self) -> None:
        schedule = self.settings.schedule
        if self.stopping.is_set() or not schedule.backfill.enabled:
            return
        # Cancelled with the other background work on shutdown; a cancelled page rolls back
        # and the next run resumes from the cursor of the last page written.
        task = asyncio.current_task()
        forget = self.track(task) if task is not None else None
        try:
            await scheduled_backfill(
                self.ledger, self.client, schedule, self.settings.policy, self.stopping
            )
        finally:
            if forget is not None:
                forget()

    async def blocked_handles_job(self) -> None:
        if self.stopping.is_set():
            return
        try:
            await refresh_blocked_handles(self.ledger, self.client, self.settings.policy)
        except LedgerUnavailable as exc:
            log.warning("blocked_handles.skipped", reason="ledger_unavailable", error=str(exc))
        except LinqError as exc:
            log.warning("blocked_handles.read_failed", error=str(exc), trace_id=exc.trace_id)

    async def refresh_gauges(self) -> None:
        gauges = await read_ledger_gauges(
            self.ledger, clock.now(), report_zone(self.settings.schedule.sharing)
        )
        publish_ledger_gauges(self.metrics, gauges)
