"""Backfill / reconcile: bring the ledger up to date from Linq's chat listings.

Webhooks can be missed (downtime longer than Linq's retries, a subscription set up late).
A backfill pages through ``GET /v3/chats?from=LINE`` (limit 100) for each line and merges
every chat into the ledger with the same order-independent merge the webhooks use: first
times take the minimum, last times the maximum, so fresher webhook data is never undone.
Where the ledger does not know a chat's first outbound message, or the chat moved since the
ledger last heard of it, the chat's messages are paged as well.

Each page of chats is written in one transaction together with the cursor that follows it
(table ``backfill_state``, one row per line), so a run that stops — killed, rate limited
for too long, a fault that outlasts the retries — resumes from the last page it wrote.
429 answers are waited out for their ``Retry-After``; 5xx and network errors are retried
with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog

from scheduler import clock, validate
from scheduler.config import E164, BackfillConfig, Schedule
from scheduler.core.event import ActivityTimes, BackfillPage, ChatActivity
from scheduler.core.rule import Policy
from scheduler.errors import (
    LedgerUnavailable,
    LinqError,
    RateLimited,
    ShareSchedulerError,
    Unauthorized,
)
from scheduler.ledger import ingest as ledger_ingest
from scheduler.ledger.engine import Ledger
from scheduler.ledger.ingest import Merge, merge_all
from scheduler.linq.client import MAX_PAGE_SIZE, LinqClient
from scheduler.linq.retry import backoff_delay, is_retryable
from scheduler.linq.types import Chat

log = structlog.get_logger("scheduler.backfill")

ALL_LINES = "*"
# Consecutive 429s one request may wait out before the run stops (and resumes next time).
MAX_RATE_LIMITED_WAITS = 20
DEFAULT_RETRY_AFTER = 60.0
# Delivery states of an outbound message that is no outbound activity (yet, or at all).
NOT_SENT = frozenset({"failed", "pending", "queued"})

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class BackfillError(ShareSchedulerError):
    """A backfill could not finish; what it wrote stays, and the next run resumes."""


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    page_size: int = MAX_PAGE_SIZE
    message_concurrency: int = 4
    max_tries: int = 5
    retry_backoff: float = 1.0
    retry_backoff_max: float = 60.0
    max_retry_after: float = 600.0

    @classmethod
    def from_config(cls, cfg: BackfillConfig) -> BackfillOptions:
        return cls(
            page_size=cfg.page_size,
            message_concurrency=cfg.message_concurrency,
            max_tries=cfg.max_tries,
            retry_backoff=cfg.retry_backoff.total_seconds(),
            retry_backoff_max=cfg.retry_backoff_max.total_seconds(),
            max_retry_after=cfg.max_retry_after.total_seconds(),
        )


@dataclass(slots=True)
class LineReport:
    """What a run did for one line ("*": every chat of the account)."""

    line: str
    resumed: bool = False
    pages: int = 0
    chats_seen: int = 0
    skipped_before_since: int = 0
    # Chats whose id no door accepts (control, invisible or markup characters): not written.
    rejected_chats: int = 0
    message_pages: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    completed: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class BackfillReport:
    lines: list[LineReport] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r.error is None for r in self.lines)

    def totals(self) -> dict[str, int]:
        keys = ("pages", "chats_seen", "message_pages", "created", "updated", "unchanged")
        return {k: sum(getattr(r, k) for r in self.lines) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "interrupted": self.interrupted,
            "totals": self.totals(),
            "lines": [r.as_dict() for r in self.lines],
        }


Progress = Callable[[LineReport], None]


async def lines_to_backfill(ledger: Ledger, schedule: Schedule) -> list[str]:
    """The configured lines and every line the ledger knows; ``["*"]`` when there is none."""
    numbers = {line.number for line in schedule.lines}
    numbers.update(await ledger_ingest.line_numbers(ledger))
    return sorted(numbers) or [ALL_LINES]


def _acceptable(chat: Chat, report: LineReport) -> bool:
    """Whether the listed chat's id passes the checks every way in applies."""
    try:
        validate.check_identifier(chat.id)
    except validate.InvalidValue as exc:
        report.rejected_chats += 1
        log.warning("backfill.chat_rejected", line=report.line, reason=f"chat id {exc}")
        return False
    return True


def _valid_handle(handle: str) -> bool:
    try:
        validate.check_handle(handle)
    except validate.InvalidValue:
        return False
    return True


def chat_activity(chat: Chat, scope: str) -> ChatActivity:
    """What a chat object from the listing says, as the webhooks' chat events would."""
    line = chat.our_handle
    if line is None or not E164.fullmatch(line):
        line = scope if scope != ALL_LINES else None
    opted_out = chat.opted_out
    health = chat.health_status
    return ChatActivity(
        chat_id=chat.id,
        line=line,
        recipients=tuple(
            h.handle for h in chat.recipients if h.left_at is None and _valid_handle(h.handle)
        ),
        is_group=chat.is_group,
        service=chat.service,
        opted_out=opted_out,
        opted_out_at=health.updated_at if opted_out and health is not None else None,
    )


def needs_messages(chat: Chat, known: ActivityTimes | None) -> bool:
    """Whether the chat's messages must be read: first outbound unknown, or activity missed."""
    if known is None or known.first_outbound_at is None:
        return True
    latest = max(
        (t for t in (known.last_outbound_at, known.last_inbound_at) if t is not None),
        default=None,
    )
    return latest is None or chat.updated_at > latest


class Backfill:
    """One run over some lines. Not reentrant; create one per run."""

    def __init__(
        self,
        ledger: Ledger,
        client: LinqClient,
        policy: Policy,
        *,
        options: BackfillOptions | None = None,
        since: datetime | None = None,
        restart: bool = False,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.policy = policy
        self.options = options or BackfillOptions()
        self.since = since
        self.restart = restart
        self.progress = progress
        self.stop = stop
        self.sleep = sleep
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        # A 429 on one request holds back every request of the run until then.
        self._resume_at = 0.0

    async def run(self, scopes: Sequence[str]) -> BackfillReport:
        report = BackfillReport()
        for scope in scopes:
            line_report = LineReport(line=scope)
            report.lines.append(line_report)
            with structlog.contextvars.bound_contextvars(line=scope):
                try:
                    finished = await self._scope(scope, line_report)
                except Unauthorized:
                    raise
                except (LinqError, BackfillError) as exc:
                    line_report.error = str(exc)
                    log.error("backfill.line_failed", error=str(exc), pages=line_report.pages)
                    continue
            if not finished:
                report.interrupted = True
                break
        log.info("backfill.finished", ok=report.ok, **report.totals())
        return report

    # -- one line ---------------------------------------------------------------------------

    async def _scope(self, scope: str, report: LineReport) -> bool:
        """Page through one line's chats; False when stopped before the end."""
        cursor = await self._starting_cursor(scope, report)
        seen_cursors: set[str] = set()
        if report.resumed:
            log.info("backfill.resumed", chats_seen=report.chats_seen)
        while True:
            if self.stop is not None and self.stop.is_set():
                log.info("backfill.stopped", pages=report.pages)
                return False
            page = await self._call(
                functools.partial(
                    self.client.list_chats,
                    from_number=None if scope == ALL_LINES else scope,
                    limit=self.options.page_size,
                    cursor=cursor,
                )
            )
            listed = page.chats
            fresh = [c for c in listed if self.since is None or c.updated_at >= self.since]
            report.pages += 1
            report.skipped_before_since += len(listed) - len(fresh)
            merges = await self._activities(scope, fresh, report)
            nxt = page.next_cursor
            if nxt is not None and nxt in seen_cursors:
                raise BackfillError(f"GET /v3/chats handed out the same cursor twice ({scope})")
            if nxt is not None:
                seen_cursors.add(nxt)
            now = clock.now()
            counts = await ledger_ingest.record_backfill_page(
                self.ledger, BackfillPage(scope, len(listed), nxt), merges, self.policy, now
            )
            report.chats_seen += len(listed)
            report.created += counts.created
            report.updated += counts.updated
            report.unchanged += counts.unchanged
            log.info(
                "backfill.page",
                page=report.pages,
                chats=len(listed),
                created=counts.created,
                updated=counts.updated,
                more=nxt is not None,
            )
            if self.progress is not None:
                self.progress(report)
            if nxt is None:
                report.completed = True
                log.info("backfill.line_done", chats_seen=report.chats_seen, pages=report.pages)
                return True
            cursor = nxt

    async def _starting_cursor(self, scope: str, report: LineReport) -> str | None:
        """Resume an unfinished run with the same ``since``; otherwise start over."""
        resume = await ledger_ingest.start_backfill(
            self.ledger, scope, self.since, clock.now(), restart=self.restart
        )
        if resume is None:
            return None
        report.resumed = True
        report.chats_seen = resume.chats_seen
        return resume.cursor

    async def _activities(
        self, scope: str, listed: list[Chat], report: LineReport
    ) -> dict[str, Merge]:
        listed = [c for c in listed if _acceptable(c, report)]
        if not listed:
            return {}
        known = await ledger_ingest.activity_times(self.ledger, [c.id for c in listed])
        wanted = [c for c in listed if needs_messages(c, known.get(c.id))]
        gate = asyncio.Semaphore(self.options.message_concurrency)

        async def read(chat: Chat) -> list[ChatActivity]:
            async with gate:
                return await self._message_activities(chat.id, report)

        found = await asyncio.gather(*(read(c) for c in wanted))
        from_messages = dict(zip((c.id for c in wanted), found, strict=True))
        return {
            c.id: merge_all([chat_activity(c, scope), *from_messages.get(c.id, [])]) for c in listed
        }

    async def _message_activities(self, chat_id: str, report: LineReport) -> list[ChatActivity]:
        """The first and last outbound and the last inbound message of one chat."""
        first_out: datetime | None = None
        last_out: datetime | None = None
        last_in: datetime | None = None
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = await self._call(
                functools.partial(
                    self.client.list_messages, chat_id, limit=self.options.page_size, cursor=cursor
                )
            )
            report.message_pages += 1
            for message in page.messages:
                if message.is_from_me and message.delivery_status in NOT_SENT:
                    # Failed, or not sent yet: no outbound activity (a later listing or its
                    # message.sent webhook tells when it goes out).
                    continue
                at = message.sent_at or message.created_at
                if message.is_from_me:
                    first_out = at if first_out is None else min(first_out, at)
                    last_out = at if last_out is None else max(last_out, at)
                else:
                    last_in = at if last_in is None else max(last_in, at)
            cursor = page.next_cursor
            if cursor is None:
                break
            if cursor in seen:
                raise BackfillError(f"messages of chat {chat_id}: the same cursor came twice")
            seen.add(cursor)
        acts = [ChatActivity(chat_id=chat_id, outbound_at=t) for t in (first_out, last_out) if t]
        if last_in is not None:
            acts.append(ChatActivity(chat_id=chat_id, inbound_at=last_in))
        return acts

    # -- calls ------------------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One read request, retried: 429 after Retry-After, 5xx and resets with backoff."""
        tries = 0
        waits = 0
        while True:
            # One path waits out every 429: this call's own, and those other calls just got.
            hold = self._resume_at - self.monotonic()
            if hold > 0:
                await self.sleep(hold)
            try:
                return await call()
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
                waits += 1
                if wait > self.options.max_retry_after or waits > MAX_RATE_LIMITED_WAITS:
                    raise BackfillError(
                        f"rate limited by Linq (Retry-After {wait:g}s); stopping here, the next "
                        "run resumes from the last page written"
                    ) from exc
                log.warning("backfill.rate_limited", retry_after=wait)
                self._resume_at = max(self._resume_at, self.monotonic() + wait)
            except LinqError as exc:
                tries += 1
                if not is_retryable(exc) or tries >= self.options.max_tries:
                    raise
                delay = backoff_delay(
                    tries - 1,
                    base=self.options.retry_backoff,
                    cap=self.options.retry_backoff_max,
                    rng=self.rng,
                )
                log.warning("backfill.retry", error=str(exc), tries=tries, delay=round(delay, 3))
                await self.sleep(delay)


async def run_backfill(
    ledger: Ledger,
    client: LinqClient,
    policy: Policy,
    scopes: Sequence[str],
    **kwargs: Any,
) -> BackfillReport:
    """Backfill ``scopes`` (line numbers, or ``["*"]``); see :class:`Backfill` for options."""
    return await Backfill(ledger, client, policy, **kwargs).run(scopes)


async def scheduled_backfill(
    ledger: Ledger,
    client: LinqClient,
    schedule: Schedule,
    policy: Policy,
    stop: asyncio.Event | None = None,
) -> BackfillReport | None:
    """The daemon's periodic run over every known line; problems are logged, never raised."""
    try:
        scopes = await lines_to_backfill(ledger, schedule)
        return await run_backfill(
            ledger,
            client,
            policy,
            scopes,
            options=BackfillOptions.from_config(schedule.backfill),
            stop=stop,
        )
    except LedgerUnavailable as exc:
        log.warning("backfill.skipped", reason="ledger_unavailable", error=str(exc))
    except LinqError as exc:
        log.warning("backfill.skipped", reason="linq_error", error=str(exc))
    return None
