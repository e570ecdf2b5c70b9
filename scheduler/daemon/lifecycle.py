"""Running the daemon: start-up, the wait for a stop, and the shutdown.

SIGTERM/SIGINT stop it cleanly: no new claims, in-flight calls finished within the grace
period or resolved as ambiguous, unstarted claims released, exit 0. SIGHUP reloads the
schedule file (:mod:`scheduler.daemon.settings`). Exit 1 when the HTTP side fails on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler import clock
from scheduler.cards.observe import sync_configured_lines
from scheduler.cards.sync import CardSync
from scheduler.config import Schedule, Secrets, load_schedule
from scheduler.daemon.health import Health
from scheduler.daemon.jobs import CardWakeups, Jobs
from scheduler.daemon.server import HttpSide, listen_socket
from scheduler.daemon.settings import Settings
from scheduler.errors import ConfigError, LedgerUnavailable
from scheduler.http.runtime import Runtime
from scheduler.ledger import schema
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.engine import Ledger
from scheduler.ledger.owner import own_ledger
from scheduler.ledger.recompute import mark_all_for_reschedule, reschedule_marked_lines
from scheduler.linq.client import LinqClient
from scheduler.logs import configure_logging, register_secrets
from scheduler.metrics import Metrics
from scheduler.notify import SystemdNotifier
from scheduler.share.share_pass import SharePass

log = structlog.get_logger("scheduler.daemon")


def default_instance_id() -> str:
    return os.environ.get("SHARE_SCHEDULER_INSTANCE") or f"{socket.gethostname()}-{os.getpid()}"


class Daemon:
    def __init__(
        self,
        schedule: Schedule,
        secrets: Secrets,
        config_path: Path | None,
        database_url: str | None = None,
    ) -> None:
        self.settings = Settings(schedule, secrets, config_path, database_url)
        self.instance = schedule.instance_id or default_instance_id()
        self.metrics = Metrics()
        # SQLite: commits never stop to checkpoint; the Checkpointer task does it (run()).
        self.ledger = Ledger.from_config(
            schedule.database, background_checkpoint=True, create_missing=True
        )
        if secrets.api_key is None:
            raise ConfigError(str(config_path), [])
        self.client = LinqClient.from_config(schedule.linq, secrets.api_key)
        self.client.on_error = self.metrics.count_api_error
        self.stopping = asyncio.Event()
        scheduler = AsyncIOScheduler(timezone=UTC)
        self.wakeups = CardWakeups(scheduler)
        self.share_pass = SharePass(
            ledger=self.ledger,
            client=self.client,
            config=schedule.share_pass,
            policy=self.settings.policy,
            instance=self.instance,
            metrics=self.metrics,
            on_card_unusable=self.wakeups.card_unusable,
        )
        self.card_sync = CardSync.from_schedule(
            schedule,
            ledger=self.ledger,
            client=self.client,
            policy=self.settings.policy,
            metrics=self.metrics,
            stop=self.stopping,
        )
        self.health = Health(
            self.ledger,
            self.share_pass,
            scheduling=lambda: bool(scheduler.running) and not self.stopping.is_set(),
        )
        # Read on each scrape: the token is rejected as long as either job says so.
        self.metrics.token_rejected.set_function(
            lambda: 1.0 if self.health.token_problem() else 0.0
        )
        self.runtime = Runtime(
            schedule=schedule,
            secrets=secrets,
            policy=self.settings.policy,
            ledger=self.ledger,
            metrics=self.metrics,
            readiness=self.health.readiness,
            on_card_event=self.wakeups.card_event,
        )
        self._background: set[asyncio.Task[Any]] = set()
        self.jobs = Jobs(
            scheduler=scheduler,
            wakeups=self.wakeups,
            settings=self.settings,
            ledger=self.ledger,
            client=self.client,
            metrics=self.metrics,
            share_pass=self.share_pass,
            card_sync=self.card_sync,
            health=self.health,
            stopping=self.stopping,
            track=self._track,
        )
        self.notifier = SystemdNotifier()

    @property
    def schedule(self) -> Schedule:
        return self.settings.schedule

    # -- reload ----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """The SIGHUP handler: read the file off the event loop, one reload at a time."""
        if self.settings.config_path is None:
            return
        self._spawn(self.reload())

    async def reload(self) -> None:
        await self.settings.reload(self.stopping, self._apply)

    def _apply(self, old: Schedule) -> None:
        """Hand the reloaded schedule to every part that holds a piece of it."""
        schedule, policy = self.settings.schedule, self.settings.policy
        self.share_pass.reconfigure(schedule.share_pass, policy)
        self.card_sync.reconfigure(schedule, policy)
        self.runtime.schedule = schedule
        self.runtime.secrets = self.settings.secrets
        self.runtime.policy = policy
        self.jobs.reschedule(old, schedule)
        if old.sharing != schedule.sharing or old.lines != schedule.lines:
            self._spawn(self._after_reload())

    async def _after_reload(self) -> None:
        try:
            await sync_configured_lines(self.ledger, self.schedule, clock.now())
            # A changed card in the schedule is written without waiting.
            self.wakeups.card_event("*")
            # Marked first: if the walk is cut short, the next card check finishes it.
            await mark_all_for_reschedule(self.ledger)
            done = await reschedule_marked_lines(
                self.ledger, self.settings.policy, stop=self.stopping
            )
        except LedgerUnavailable as exc:
            # The lines stay marked: the next card check reschedules their chats.
            log.warning("config.reschedule_failed", error=str(exc))
            return
        log.info("config.chats_rescheduled", chats=sum(done.values()), lines=len(done))

    # -- background tasks ------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _track(self, task: asyncio.Task[Any]) -> Callable[[], None]:
        """Cancel ``task`` with the background work on shutdown, until the call returned."""
        self._background.add(task)
        return lambda: self._background.discard(task)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> int:
        register_secrets(self.settings.secret_values())
        cfg = self.schedule
        # Taken before anything else, so that a clash is one line and an exit code at once.
        listener = (
            listen_socket(cfg.webhooks.host, cfg.webhooks.port, cfg.webhooks.listen)
            if cfg.webhooks.enabled
            else None
        )
        with contextlib.closing(listener) if listener is not None else contextlib.nullcontext():
            return await self._run(listener)

    async def _run(self, listener: socket.socket | None) -> int:
        await schema.ensure_current(self.ledger)
        await sync_configured_lines(self.ledger, self.schedule, clock.now())
        cfg = self.schedule
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        start = datetime.now(UTC)
        if self.ledger.is_sqlite:
            self._spawn(Checkpointer(self.ledger).run(self.stopping))
        http = HttpSide(self.runtime, cfg, listener) if listener is not None else None
        server_task = http.start() if http is not None else None
        settle_heap()
        self.jobs.start(start)
        log.info(
            "daemon.started",
            instance=self.instance,
            ledger=self.ledger.url,
            listen=cfg.webhooks.listen if cfg.webhooks.enabled else None,
            pid=os.getpid(),
        )
        self._spawn(
            self.notifier.run(
                lambda: self.jobs.scheduler.running and (http is None or http.started),
                self.stopping,
            )
        )
        stop_wait = asyncio.create_task(self.stopping.wait())
        watch = [stop_wait] + ([server_task] if server_task else [])
        done, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        if server_task in done and not self.stopping.is_set():
            log.error(
                "daemon.http_failed", error=repr(server_task.exception()) if server_task else None
            )
            exit_code = 1
        await self.shutdown(http)
        stop_wait.cancel()
        return exit_code

    async def shutdown(self, http: HttpSide | None) -> None:
        log.info("daemon.stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.share_pass.request_stop()
        self.jobs.scheduler.pause()
        grace = self.schedule.share_pass.shutdown_grace.total_seconds()
        await _finish_within(grace, [self.jobs.pass_task, self.jobs.card_task])
        self.jobs.scheduler.shutdown(wait=False)
        await _cancel_all(list(self._background))
        if http is not None:
            await http.stop()
        if self.runtime.writer is not None:
            await self.runtime.writer.close()
        await self.client.aclose()
        await self.ledger.dispose()
        log.info("daemon.stopped")


def settle_heap() -> None:
    """Put what start-up made (the libraries' modules, the engine, the app: most of the
    daemon's objects, kept for its whole life) out of the garbage collector's sight. Each
    collection of the older generations otherwise walks all of them again: in a claim of 500
    chats, a third of the rule's re-check and half of the rows' conversion
    (``python -m bench.due_query``). What the passes make is collected as before. No full
    collection first: start-up leaves next to no cyclic garbage (none found after the
    imports), and one would cost 40-80 ms before the first claim."""
    gc.freeze()


async def _finish_within(grace: float, tasks: list[asyncio.Task[Any] | None]) -> None:
    """Let the jobs under way finish (they stop at their next step) for at most ``grace``
    seconds, then cancel the rest; return once every one has ended."""
    running = [t for t in tasks if t is not None and not t.done()]
    if not running:
        return
    _, late = await asyncio.wait(running, timeout=grace)
    if late:
        log.warning("daemon.grace_expired", grace_seconds=grace, jobs=len(late))
    await _cancel_all(list(late))
    for task in running:
        if not task.cancelled() and task.exception() is not None:
            # The job has logged it; shutdown goes on.
            log.debug("daemon.job_ended_with_error", error=repr(task.exception()))


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    # Awaited, so that every transaction is rolled back before the ledger is closed.
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_daemon(config_path: Path, database_url: str | None = None) -> int:
    schedule, secrets = load_schedule(config_path, database_url=database_url)
    configure_logging(schedule.logging.level, schedule.logging.format)
    # One daemon per SQLite ledger, for the whole of its life.
    with own_ledger(schedule.database.url):
        daemon = Daemon(schedule, secrets, config_path, database_url)
        return await daemon.run()
