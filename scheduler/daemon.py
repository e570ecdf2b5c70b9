"""The daemon: APScheduler jobs and the HTTP server in one asyncio process.

The ledger is the source of truth; APScheduler only wakes the sweeps (share pass, card
check, pruning). SIGTERM/SIGINT stop it cleanly: no new claims, in-flight calls finished
within the grace period or resolved as ambiguous, unstarted claims released, exit 0.
SIGHUP reloads the schedule file; an invalid file is rejected and the old schedule kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler import clock
from scheduler.cards import CardSync, sync_configured_lines
from scheduler.config import Schedule, Secrets, load_schedule
from scheduler.errors import ConfigError, LedgerUnavailable, LinqError, ListenFailed, Unauthorized
from scheduler.http.app import Runtime, create_app
from scheduler.http.server import Server, ServerLimits, build_server
from scheduler.ingest.backfill import scheduled_backfill
from scheduler.ingest.blocked import refresh_blocked_handles
from scheduler.ledger import schema
from scheduler.ledger.checkpoint import Checkpointer
from scheduler.ledger.engine import Ledger
from scheduler.ledger.gauges import refresh_due, refresh_ledger_gauges
from scheduler.ledger.ingest import prune_events
from scheduler.ledger.owner import own_ledger
from scheduler.ledger.recompute import mark_all_for_reschedule, reschedule_marked_lines
from scheduler.ledger.retention import prune_attempts
from scheduler.ledger.stats import report_zone
from scheduler.linq.client import LinqClient
from scheduler.logs import configure_logging, register_secrets
from scheduler.metrics import Metrics
from scheduler.notify import SystemdNotifier
from scheduler.rule import Policy
from scheduler.share.share_pass import SharePass
from scheduler.wakeups import Waker

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
        self.schedule = schedule
        self.secrets = secrets
        self.config_path = config_path
        # A --database-url given at start outlives reloads of the file.
        self.database_url = database_url
        self.schema_head = schema.head_revision()
        self.instance = schedule.instance_id or default_instance_id()
        self.policy = Policy.from_config(schedule.sharing)
        self.metrics = Metrics()
        # SQLite: commits never stop to checkpoint; the Checkpointer task does it (run()).
        self.ledger = Ledger.from_config(
            schedule.database, background_checkpoint=True, create_missing=True
        )
        if secrets.api_key is None:
            raise ConfigError(str(config_path), [])
        self.client = LinqClient.from_config(schedule.linq, secrets.api_key)
        self.client.on_error = self.metrics.count_api_error
        self.share_pass = SharePass(
            ledger=self.ledger,
            client=self.client,
            config=schedule.share_pass,
            policy=self.policy,
            instance=self.instance,
            metrics=self.metrics,
            on_card_unusable=self._card_unusable,
        )
        self.stopping = asyncio.Event()
        self.card_sync = CardSync.from_schedule(
            schedule,
            ledger=self.ledger,
            client=self.client,
            policy=self.policy,
            metrics=self.metrics,
            stop=self.stopping,
        )
        self.runtime = Runtime(
            schedule=schedule,
            secrets=secrets,
            policy=self.policy,
            ledger=self.ledger,
            metrics=self.metrics,
            readiness=self.readiness,
            on_card_event=self._card_event,
        )
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.card_waker = Waker(self.scheduler, "card_check")
        self.notifier = SystemdNotifier()
        self.pass_task: asyncio.Task[Any] | None = None
        self.card_task: asyncio.Task[Any] | None = None
        self.token_error: str | None = None
        self.ledger_error: str | None = None
        # Read on each scrape: the token is rejected as long as either job says so.
        self.metrics.token_rejected.set_function(
            lambda: 1.0 if (self.token_error or self.share_pass.auth_failure) else 0.0
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()

    # -- jobs ------------------------------------------------------------------------------

    async def share_job(self) -> None:
        if self.stopping.is_set():
            return
        self.pass_task = asyncio.current_task()
        try:
            await self.share_pass.run()
            await refresh_due(self.ledger, self.metrics, clock.now())
            self.ledger_error = None
        except LedgerUnavailable as exc:
            self.ledger_error = str(exc)
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
                self.token_error = None
                self.share_pass.auth_failure = None
            self._card_event_at(report.wake_at)
            await self._refresh_gauges()
            self.ledger_error = None
        except LedgerUnavailable as exc:
            self.ledger_error = str(exc)
            log.warning("card.check_skipped", reason="ledger_unavailable", error=str(exc))
        except Unauthorized as exc:
            self.token_error = str(exc)
            log.error("linq.unauthorized", error=str(exc))
        finally:
            self.card_task = None

    async def prune_job(self) -> None:
        now = clock.now()
        try:
            removed = await prune_events(self.ledger, now - self.schedule.webhooks.event_retention)
            log.info("prune.webhook_events", removed=removed)
            retention = self.schedule.share_pass.attempt_retention
            if retention is not None:
                removed = await prune_attempts(self.ledger, now - retention)
                log.info("prune.share_attempts", removed=removed)
        except LedgerUnavailable as exc:
            log.warning("prune.skipped", error=str(exc))

    async def backfill_job(self) -> None:
        if self.stopping.is_set() or not self.schedule.backfill.enabled:
            return
        # Cancelled with the other background work on shutdown; a cancelled page rolls back
        # and the next run resumes from the cursor of the last page written.
        task = asyncio.current_task()
        if task is not None:
            self._background.add(task)
        try:
            await scheduled_backfill(
                self.ledger, self.client, self.schedule, self.policy, self.stopping
            )
        finally:
            if task is not None:
                self._background.discard(task)

    async def blocked_handles_job(self) -> None:
        if self.stopping.is_set():
            return
        try:
            await refresh_blocked_handles(self.ledger, self.client, self.policy)
        except LedgerUnavailable as exc:
            log.warning("blocked_handles.skipped", reason="ledger_unavailable", error=str(exc))
        except LinqError as exc:
            log.warning("blocked_handles.read_failed", error=str(exc), trace_id=exc.trace_id)

    async def _refresh_gauges(self) -> None:
        await refresh_ledger_gauges(
            self.ledger, self.metrics, clock.now(), report_zone(self.schedule.sharing)
        )

    def _card_event(self, number: str) -> None:
        self.card_waker.request(datetime.now(UTC))

    def _card_unusable(self, number: str) -> None:
        # A share answered 2012 (its outcome is committed): read the card now. If it was
        # deleted and the schedule declares it, the card job creates it again within its write
        # budget. At most once per line per pass, so an API that disagrees with itself costs
        # one read per pass.
        log.info("card.recheck_requested", line=number, reason="share_refused")
        self._card_event(number)

    def _card_event_at(self, at: datetime | None) -> None:
        """Run the card job again at ``at`` (ledger time) if that is before its next run."""
        if at is not None:
            self.card_waker.request(datetime.now(UTC) + max(at - clock.now(), timedelta(0)))

    # -- readiness -------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            async with asyncio.timeout(3):
                async with self.ledger.read() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            checks["ledger"] = "ok"
            current = await schema.current_revision(self.ledger)
            checks["schema"] = (
                "ok"
                if current == self.schema_head
                else f"at {current or 'nothing'}, this version needs {self.schema_head}"
            )
        except (LedgerUnavailable, TimeoutError, OSError) as exc:
            checks.setdefault("ledger", f"unavailable: {str(exc)[:200] or type(exc).__name__}")
            checks.setdefault("schema", "unknown: the ledger is unavailable")
        token_error = self.token_error or self.share_pass.auth_failure
        checks["token"] = f"rejected: {token_error}" if token_error else "ok"
        running = self.scheduler.running and not self.stopping.is_set()
        checks["scheduler"] = "running" if running else "stopped"
        ledger_ok = checks["ledger"] == "ok" and checks["schema"] == "ok"
        ready = ledger_ok and token_error is None and running
        return ready, checks

    # -- reload ----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """The SIGHUP handler: read the file off the event loop, one reload at a time."""
        if self.config_path is None:
            return
        self._spawn(self.reload())

    async def reload(self) -> None:
        if self.config_path is None:
            return
        async with self._reload_lock:
            try:
                # In a thread: reading and validating a hostile or huge file must not stop
                # webhooks, /healthz and shares in the meantime.
                schedule, secrets = await asyncio.to_thread(
                    load_schedule, self.config_path, database_url=self.database_url
                )
            except ConfigError as exc:
                log.error(
                    "config.reload_rejected",
                    path=str(self.config_path),
                    problems=[str(p) for p in exc.problems],
                )
                return
            except Exception as exc:  # whatever the file did, the old schedule stays
                log.error(
                    "config.reload_rejected", path=str(self.config_path), problems=[repr(exc)]
                )
                return
            if self.stopping.is_set():
                return
            self._apply(schedule, secrets)

    def _apply(self, schedule: Schedule, secrets: Secrets) -> None:
        assert self.config_path is not None
        old = self.schedule
        pending = restart_required(old, schedule, self.secrets, secrets)
        self.schedule = schedule
        self.secrets = secrets
        register_secrets(self._secret_values())
        self.policy = Policy.from_config(schedule.sharing)
        self.share_pass.reconfigure(schedule.share_pass, self.policy)
        self.card_sync.reconfigure(schedule, self.policy)
        self.runtime.schedule = schedule
        self.runtime.secrets = secrets
        self.runtime.policy = self.policy
        configure_logging(schedule.logging.level, schedule.logging.format)
        if old.share_pass.interval != schedule.share_pass.interval:
            self.scheduler.reschedule_job(
                "share_pass",
                trigger=IntervalTrigger(seconds=schedule.share_pass.interval.total_seconds()),
            )
        if old.cards.check_interval != schedule.cards.check_interval:
            self.scheduler.reschedule_job(
                "card_check",
                trigger=IntervalTrigger(seconds=schedule.cards.check_interval.total_seconds()),
            )
        if old.backfill.interval != schedule.backfill.interval:
            self.scheduler.reschedule_job(
                "backfill",
                trigger=IntervalTrigger(seconds=schedule.backfill.interval.total_seconds()),
            )
        log.info("config.reloaded", path=str(self.config_path))
        if pending:
            log.warning("config.restart_required", path=str(self.config_path), keys=pending)
        if old.sharing != schedule.sharing or old.lines != schedule.lines:
            self._spawn(self._after_reload())

    async def _after_reload(self) -> None:
        try:
            await sync_configured_lines(self.ledger, self.schedule, clock.now())
            self._card_event("*")  # a changed card in the schedule is written without waiting
            # Marked first: if the walk is cut short, the next card check finishes it.
            await mark_all_for_reschedule(self.ledger)
            done = await reschedule_marked_lines(self.ledger, self.policy, stop=self.stopping)
        except LedgerUnavailable as exc:
            # The lines stay marked: the next card check reschedules their chats.
            log.warning("config.reschedule_failed", error=str(exc))
            return
        log.info("config.chats_rescheduled", chats=sum(done.values()), lines=len(done))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _secret_values(self) -> list[str]:
        values = [s.reveal() for s in self.secrets.webhook_secrets]
        if self.secrets.api_key is not None:
            values.append(self.secrets.api_key.reveal())
        return values

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> int:
        register_secrets(self._secret_values())
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
        now = clock.now()
        await sync_configured_lines(self.ledger, self.schedule, now)
        cfg = self.schedule
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        start = datetime.now(UTC)
        if self.ledger.is_sqlite:
            self._spawn(Checkpointer(self.ledger).run(self.stopping))
        self.scheduler.add_job(
            self.card_job,
            IntervalTrigger(seconds=cfg.cards.check_interval.total_seconds()),
            id="card_check",
            max_instances=1,
            coalesce=True,
            next_run_time=start,
        )
        self.scheduler.add_job(
            self.share_job,
            IntervalTrigger(seconds=cfg.share_pass.interval.total_seconds()),
            id="share_pass",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=start + timedelta(milliseconds=200),
        )
        self.scheduler.add_job(
            self.prune_job,
            IntervalTrigger(hours=24),
            id="prune",
            max_instances=1,
            coalesce=True,
            # Soon after start too: a daemon restarted daily would otherwise never prune.
            next_run_time=start + timedelta(minutes=1),
        )
        self.scheduler.add_job(
            self.blocked_handles_job,
            IntervalTrigger(hours=24),
            id="blocked_handles",
            max_instances=1,
            coalesce=True,
            next_run_time=start + timedelta(seconds=1),
        )
        every = cfg.backfill.interval
        self.scheduler.add_job(
            self.backfill_job,
            IntervalTrigger(seconds=every.total_seconds()),
            id="backfill",
            max_instances=1,
            coalesce=True,
            next_run_time=start + (timedelta(seconds=5) if cfg.backfill.at_start else every),
        )
        server: Server | None = None
        server_task: asyncio.Task[Any] | None = None
        if listener is not None:
            server = build_server(
                create_app(self.runtime), cfg.webhooks.host, cfg.webhooks.port, server_limits(cfg)
            )
            server_task = asyncio.create_task(server.serve(sockets=[listener]), name="http")
        self.scheduler.start()
        log.info(
            "daemon.started",
            instance=self.instance,
            ledger=self.ledger.url,
            listen=cfg.webhooks.listen if cfg.webhooks.enabled else None,
            pid=os.getpid(),
        )
        self._spawn(
            self.notifier.run(
                lambda: self.scheduler.running and (server is None or server.started),
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
        await self.shutdown(server, server_task)
        stop_wait.cancel()
        return exit_code

    async def shutdown(self, server: Server | None, server_task: asyncio.Task[Any] | None) -> None:
        log.info("daemon.stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.share_pass.request_stop()
        self.scheduler.pause()
        grace = self.schedule.share_pass.shutdown_grace.total_seconds()
        await _finish_within(grace, [self.pass_task, self.card_task])
        self.scheduler.shutdown(wait=False)
        await _cancel_all(list(self._background))
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server_task, 5)
        if self.runtime.writer is not None:
            await self.runtime.writer.close()
        await self.client.aclose()
        await self.ledger.dispose()
        log.info("daemon.stopped")


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


def server_limits(schedule: Schedule) -> ServerLimits:
    cfg = schedule.http
    return ServerLimits(
        max_header_bytes=cfg.max_header_bytes,
        max_headers=cfg.max_headers,
        header_timeout=cfg.header_timeout.total_seconds(),
        body_timeout=cfg.body_timeout.total_seconds(),
        keep_alive=cfg.keep_alive.total_seconds(),
        max_connections=cfg.max_connections,
        max_requests_in_flight=cfg.max_requests_in_flight,
    )


def restart_required(
    old: Schedule, new: Schedule, old_secrets: Secrets, new_secrets: Secrets
) -> list[str]:
    """The changed keys a reload cannot apply: they are bound when the daemon starts."""
    keys = []
    if old.database != new.database:
        keys.append("database")
    if old.linq != new.linq or old_secrets.api_key != new_secrets.api_key:
        keys.append("linq")
    if (old.webhooks.enabled, old.webhooks.listen) != (new.webhooks.enabled, new.webhooks.listen):
        keys.append("webhooks.listen")
    if old.http != new.http:
        keys.append("http")
    if old.instance_id != new.instance_id:
        keys.append("instance_id")
    return keys


def listen_socket(host: str, port: int, listen: str) -> socket.socket:
    """The webhook server's listening socket, bound now; ListenFailed (one line) if it cannot."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenFailed(f"webhooks.listen {listen}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another process listens there)"
        raise ListenFailed(f"webhooks.listen {listen}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


async def run_daemon(config_path: Path, database_url: str | None = None) -> int:
    schedule, secrets = load_schedule(config_path, database_url=database_url)
    configure_logging(schedule.logging.level, schedule.logging.format)
    # One daemon per SQLite ledger, for the whole of its life.
    with own_ledger(schedule.database.url):
        daemon = Daemon(schedule, secrets, config_path, database_url)
        return await daemon.run()
