"""One share pass, in three steps with typed records between them:

- **select** (``_Claimer``, ``SharePass._select``): claim due chats through the ledger; each
  claim's intent is committed before its call. Each of the ``concurrency`` workers waits for
  its turn under the rate limit, then asks for one claim; the asks that arrive while a claim
  transaction runs are served together by the next one (up to ``batch_size``). Each worker's
  next claim is taken ahead, timed by the worker's cycle to be ready as it asks (at most four
  per worker at a time): claims without an outcome (which count as shared if the process dies,
  a missed day) stay about the calls in flight, and no worker waits for a transaction.
- **call** (``ShareCaller``): Linq's share for one :class:`Claim`, under the rate limit, with
  retries; returns a :class:`CallRecord` (what the calls did, and the decision). No ledger.
- **record** (``OutcomeWriter``, buffered by ``_Recorder``): write outcomes through the ledger,
  in transactions of many chats. While the pass claims, each claim transaction first writes
  the outcomes buffered since the last (``record_and_claim``): one commit per batch of calls.

``share now`` (:mod:`scheduler.share.manual`) runs the same call and record steps for one claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from scheduler import clock
from scheduler.config import SharePassConfig
from scheduler.core.chat import CallRecord, Claim
from scheduler.core.rule import Policy
from scheduler.core.share_outcome import Decision, decide
from scheduler.core.status import Outcome
from scheduler.errors import LedgerUnavailable, LinqError, LinqTransportError
from scheduler.ledger.claims import (
    record_and_claim,
    record_results,
    release_claims,
)
from scheduler.ledger.engine import Ledger
from scheduler.linq.client import LinqClient
from scheduler.linq.retry import backoff_delay, is_retryable
from scheduler.metrics import Metrics
from scheduler.share.limiter import RateLimiter

log = structlog.get_logger("scheduler.share")

RECORD_BATCH = 200
# The claims a pass may hold ahead of its workers' asks, per worker: at zero latency a claim
# transaction on a busy event loop takes longer than several calls.
CLAIMS_AHEAD_PER_WORKER = 4
# Outcomes wait at most this long in memory: longer means fewer, larger transactions.
RECORD_INTERVAL = 0.1


class _Claimer:
    """Claims for the workers ready to call: each asks for one chat; the asks made while a
    claim transaction runs are served together by the next one.

    ``take(n)`` claims up to ``n`` chats; it returns ``None`` once nothing more is due (or the
    pass must stop), and from then on every ask is answered ``None``. One claim transaction at
    a time: the asks pile up into fewer, larger ones as the pace grows, and the claims never
    contend with each other (on SQLite they would only queue for the one writer).

    **Claims ahead.** A worker that finds no spare claim waits for a whole claim transaction:
    at zero latency that wait is longer than a call, and at any latency the workers that
    started together come back together and wait together, every round. So each worker's next
    claim is taken ahead, by a *lead*: as a worker gets a claim, a lead is set for when the
    worker will ask again (its cycle: from one claim to its next ask, smoothed over the
    workers) less two claim transactions (their smoothed duration). The claim is ready as the
    worker asks, and waits unsent only about one transaction -- a claim without an outcome,
    which a crash would count as shared (a missed day, never a double share). A pass held back
    by the rate limit has a long cycle, so its leads come just before its turns. A cycle
    shorter than two transactions (calls faster than claims, at zero latency) keeps what the
    ``workers`` ask for in two transactions claimed ahead. At most ``ahead`` claims are taken
    ahead at a time.
    """

    # Weight of the newest sample in the smoothed cycle and transaction time.
    SMOOTHING = 0.25

    def __init__(
        self,
        take: Callable[[int], Awaitable[list[Claim] | None]],
        *,
        workers: int = 1,
        ahead: int = 0,
    ) -> None:
        self.take = take
        self.workers = workers
        self.ahead = ahead
        self.asks: list[asyncio.Future[Claim | None]] = []
        self.spare: list[Claim] = []
        self.done = False
        self.cycle: float | None = None  # a worker's time from a claim to its next ask
        self.transaction = 0.0  # a claim transaction's duration
        self.leads = 0  # claims wanted ahead by the next transaction
        self._leads_taking = 0  # claims wanted ahead by the transaction running
        self._timed = 0  # leads set for later (a closed claimer ignores them as they come)
        self._serving: asyncio.Task[None] | None = None

    def _smoothed(self, average: float | None, sample: float) -> float:
        return sample if average is None else average + self.SMOOTHING * (sample - average)

    async def next(self, previous: float | None = None) -> Claim | None:
        """A claim for a worker about to call (``None``: nothing more to do). ``previous``:
        when (``loop.time()``) the worker got its last claim."""
        loop = asyncio.get_running_loop()
        if previous is not None:
            self.cycle = self._smoothed(self.cycle, loop.time() - previous)
        claim = await self._next()
        if claim is not None:
            self._set_lead(loop)
        return claim

    async def _next(self) -> Claim | None:
        if self.spare:
            return self.spare.pop()
        if self.done:
            return None
        ask: asyncio.Future[Claim | None] = asyncio.get_running_loop().create_future()
        self.asks.append(ask)
        self._start_serving()
        return await ask

    def _set_lead(self, loop: asyncio.AbstractEventLoop) -> None:
        """Claims ahead for the worker just served, due before its next ask."""
        ahead = len(self.spare) + self.leads + self._leads_taking + self._timed
        if self.cycle is None or self.done or ahead >= self.ahead:
            return
        delay = self.cycle - 2 * self.transaction
        if delay > 0:
            # One claim ahead per worker at most: claims taken ahead for a burst (below) are
            # used up before new leads are set.
            if ahead < self.workers:
                self._timed += 1
                loop.call_later(delay, self._timed_lead)
            return
        # A cycle shorter than two transactions (calls faster than claims): the workers ask
        # for more while one claim is on its way than one lead each would cover. Keep what
        # they ask for in two transactions claimed ahead.
        wanted = math.ceil(self.workers * 2 * self.transaction / max(self.cycle, 1e-6))
        more = min(self.ahead, max(wanted, 1)) - ahead
        if more > 0:
            self.leads += more
            self._start_serving()

    def _timed_lead(self) -> None:
        self._timed -= 1
        if not self.done:
            self.leads += 1
            self._start_serving()

    def _start_serving(self) -> None:
        # done() turns true as the serving coroutine returns, before any other task runs.
        if not self.done and (self._serving is None or self._serving.done()):
            self._serving = asyncio.create_task(self._serve(), name="share-claimer")

    async def _serve(self) -> None:
        asks: list[asyncio.Future[Claim | None]] = []
        loop = asyncio.get_running_loop()
        try:
            while not self.done:
                asks = [a for a in self.asks if not a.done()]
                self.asks = []
                self._leads_taking, self.leads = self.leads, 0
                wanted = len(asks) + self._leads_taking
                if not wanted:
                    break
                started = loop.time()
                claims = await self.take(wanted)
                self.transaction = self._smoothed(self.transaction, loop.time() - started)
                self._leads_taking = 0
                if claims is None:
                    self.done = True
                    break
                for ask in asks:
                    if claims and not ask.done():
                        ask.set_result(claims.pop())
                    elif not ask.done():
                        self.asks.append(ask)  # fewer claimed than asked: ask again
                asks = []
                # Claims ahead, and those of workers cancelled meanwhile (for the release).
                self.spare.extend(claims)
                if not claims and not self.asks:
                    break  # all asks served, and nothing claimed ahead: due chats ran short
        except BaseException as exc:
            self.done = True
            for ask in asks + self.asks:
                if ask.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    ask.cancel()
                else:
                    ask.set_exception(exc)
            self.asks = []
            raise
        if self.done:
            # Nothing more is due: what was claimed ahead goes to the asks still waiting.
            for ask in asks + self.asks:
                if not ask.done():
                    ask.set_result(self.spare.pop() if self.spare else None)
            self.asks = []

    async def close(self) -> list[Claim]:
        """End the claiming; return the claims taken that no worker started."""
        self.done = True
        if self._serving is not None:
            await asyncio.gather(self._serving, return_exceptions=True)
        spare, self.spare = self.spare, []
        return spare


@dataclass
class PassReport:
    pass_id: str
    started_at: datetime
    finished_at: datetime | None = None
    claimed: int = 0
    ambiguous_resolved: int = 0
    released: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped: bool = False
    interrupted: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "pass_id": self.pass_id,
            "claimed": self.claimed,
            "ambiguous_resolved": self.ambiguous_resolved,
            "released": self.released,
            "outcomes": dict(self.outcomes),
            "stopped": self.stopped,
            "interrupted": self.interrupted,
        }


class ShareCaller:
    """The call step: Linq's share for one claim, with retries, under the rate limit.

    Touches no ledger: it returns the :class:`CallRecord` of the claim's calls, decided by the
    decision table. ``stopping`` cuts the retries short (the pass is stopping).
    """

    def __init__(
        self,
        client: LinqClient,
        config: SharePassConfig,
        *,
        limiter: RateLimiter,
        metrics: Metrics,
        rng: random.Random,
        stopping: asyncio.Event,
    ) -> None:
        self.client = client
        self.config = config
        self.limiter = limiter
        self.metrics = metrics
        self.rng = rng
        self.stopping = stopping

    async def call(
        self,
        claim: Claim,
        *,
        on_cut_short: Callable[[CallRecord], None],
        turn_taken: bool = False,
    ) -> CallRecord:
        """Call for ``claim`` until an answer is final (``turn_taken``: the first call's turn
        under the rate limit is already spent).

        Cancelled mid-call, the request may have been sent: ``on_cut_short`` is handed the
        claim's ambiguous record (to be written) before the cancellation goes on.
        """
        cfg = self.config
        tries = 0
        maybe_applied = False
        error: LinqError | None = None
        http_status: int | None = None
        trace_id: str | None = None
        latency_ms: float | None = None
        try:
            while True:
                tries += 1
                if tries > 1 or not turn_taken:
                    await self.limiter.acquire()
                t0 = time.perf_counter()
                try:
                    result = await self.client.share_contact_card(claim.chat_id)
                except LinqError as exc:
                    latency_ms = (time.perf_counter() - t0) * 1000
                    self.metrics.share_latency.observe(latency_ms / 1000)
                    error = exc
                    http_status, trace_id = exc.status, exc.trace_id
                    if isinstance(exc, LinqTransportError):
                        maybe_applied = maybe_applied or exc.sent
                    if tries < cfg.max_tries and is_retryable(exc) and not self.stopping.is_set():
                        await asyncio.sleep(
                            backoff_delay(
                                tries - 1,
                                base=cfg.retry_backoff.total_seconds(),
                                cap=cfg.retry_backoff_max.total_seconds(),
                                rng=self.rng,
                            )
                        )
                        continue
                    break
                else:
                    error = None
                    http_status, trace_id = result.http_status, result.trace_id
                    latency_ms = result.latency_ms
                    self.metrics.share_latency.observe(latency_ms / 1000)
                    break
        except asyncio.CancelledError:
            # Cancelled mid-call (shutdown past its grace): the request may have been sent.
            decision = Decision(
                Outcome.ambiguous,
                counts_as_shared=True,
                error="cancelled during the call (shutdown)",
            )
            on_cut_short(
                CallRecord(
                    claim, decision, clock.now(), tries, http_status, None, trace_id, latency_ms
                )
            )
            raise
        decision = decide(
            error,
            now=clock.now(),
            maybe_applied=maybe_applied,
            consecutive_failures=claim.consecutive_failures,
            failure_backoff=cfg.failure_backoff,
        )
        return CallRecord(
            claim=claim,
            decision=decision,
            finished_at=clock.now(),
            tries=tries,
            http_status=http_status,
            error_code=error.code if error is not None else None,
            trace_id=trace_id,
            latency_ms=latency_ms,
        )


def observe_outcome(record: CallRecord, metrics: Metrics) -> None:
    """The metrics and the ``share.*`` event of one claim's outcome."""
    d = record.decision
    metrics.share_outcome(str(d.outcome), record.claim.line or "-").inc()
    if d.outcome == Outcome.ambiguous:
        metrics.ambiguous_attempts.inc()
    fields = {
        "chat_id": record.claim.chat_id,
        "line": record.claim.line,
        "attempt_id": record.claim.attempt_id,
        "tries": record.tries,
        "trace_id": record.trace_id,
    }
    if d.outcome == Outcome.shared:
        log.info("share.succeeded", latency_ms=record.latency_ms, **fields)
        return
    log.warning(
        f"share.{d.outcome}",
        http_status=record.http_status,
        code=record.error_code,
        error=d.error,
        not_before=d.not_before.isoformat() if d.not_before else None,
        **fields,
    )


class OutcomeWriter:
    """The record step: writes outcomes through the ledger, one transaction per batch.

    While the ledger is unreachable a write is retried, for at most ``patience``: the claims
    it closes stay valid for the lease, and past it the records would be stale (the chats are
    resolved as ambiguous by whoever finds them).
    """

    def __init__(
        self,
        ledger: Ledger,
        policy: Policy,
        *,
        patience: float,
        on_recorded: Callable[[list[CallRecord]], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.patience = patience
        self.on_recorded = on_recorded

    async def write(self, batch: list[CallRecord]) -> list[CallRecord]:
        """Write ``batch``; return its records whose claim was lost (resolved elsewhere)."""
        lost: list[CallRecord] = []

        async def once() -> None:
            lost[:] = await record_results(self.ledger, batch, self.policy, clock.now())

        await retry_while_unavailable(once, self.patience)
        self.written(batch, lost)
        return lost

    def written(self, batch: list[CallRecord], lost: list[CallRecord]) -> None:
        """After ``batch`` is committed (here or with a claim): what its write calls for."""
        if self.on_recorded is not None:
            self.on_recorded(batch)
        for rec in lost:
            log.warning(
                "share.claim_lost",
                chat_id=rec.claim.chat_id,
                attempt_id=rec.claim.attempt_id,
                outcome=rec.decision.outcome,
            )


class _Recorder:
    """Buffers call records and hands them to the writer in batches, from one task.

    While the pass claims, its claim transactions carry the records buffered meanwhile
    (``take``): the recorder writes on its own only the records no claim took within
    ``RECORD_INTERVAL`` (a slow pace, the pass's end), or a full batch.
    """

    def __init__(self, writer: OutcomeWriter) -> None:
        self.writer = writer
        self.pending: list[CallRecord] = []
        self.wake = asyncio.Event()
        self.closed = False
        self._taken = False  # a claim took records since the recorder last looked

    def add(self, record: CallRecord) -> None:
        self.pending.append(record)
        if len(self.pending) >= RECORD_BATCH:
            self.wake.set()

    def take(self) -> list[CallRecord]:
        """The buffered records, for a claim transaction to write."""
        batch = self._next_batch()
        self._taken = self._taken or bool(batch)
        return batch

    def _next_batch(self) -> list[CallRecord]:
        # Out of the buffer before any write starts: a claim may take the rest meanwhile.
        batch = self.pending[: RECORD_BATCH * 5]
        del self.pending[: len(batch)]
        return batch

    def give_back(self, batch: list[CallRecord]) -> None:
        """Records a failed claim transaction did not write: first in line again."""
        self.pending[:0] = batch

    async def flush(self) -> None:
        while self.pending:
            batch = self._next_batch()
            try:
                await self.writer.write(batch)
            except BaseException:
                self.give_back(batch)
                raise

    async def run(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), RECORD_INTERVAL)
            full = self.wake.is_set()
            self.wake.clear()
            taken, self._taken = self._taken, False
            if taken and not full and not self.closed:
                continue  # the claims carry the records
            try:
                await self.flush()
            except LedgerUnavailable as exc:
                log.error("share.record_failed", error=str(exc), pending=len(self.pending))
                return


async def retry_while_unavailable(write: Callable[[], Awaitable[object]], patience: float) -> None:
    """Run ``write``, retrying while the ledger is unavailable, for at most ``patience`` s."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            await write()
            return
        except LedgerUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("ledger.unavailable", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class SharePass:
    """Runs passes; one instance lives as long as the daemon."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        client: LinqClient,
        config: SharePassConfig,
        policy: Policy,
        instance: str,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        on_card_unusable: Callable[[str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.instance = instance
        self.metrics = metrics or Metrics()
        self.rng = rng or random.Random()
        self.stopping = asyncio.Event()
        self.reconfigure(config, policy)
        self.auth_failure: str | None = None
        self.blocked_lines: set[str] = set()
        # Told of each line whose card a share found unusable (2012), once per pass, so that
        # the card is read again now rather than at the next card check.
        self.on_card_unusable = on_card_unusable
        self._rechecked: set[str] = set()  # lines whose card this pass asked to re-read

    def reconfigure(self, config: SharePassConfig, policy: Policy) -> None:
        self.config = config
        self.policy = policy
        self.limiter = RateLimiter(config.requests_per_second, burst=config.concurrency)
        self.caller = ShareCaller(
            self.client,
            config,
            limiter=self.limiter,
            metrics=self.metrics,
            rng=self.rng,
            stopping=self.stopping,
        )

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> PassReport:
        started = clock.now()
        report = PassReport(pass_id=uuid.uuid4().hex[:12], started_at=started)
        self.blocked_lines.clear()
        self._rechecked.clear()
        bound = structlog.contextvars.bound_contextvars(pass_id=report.pass_id)
        bound.__enter__()
        t0 = time.monotonic()
        self.metrics.pass_started.set(time.time())
        try:
            if self.auth_failure is not None or self.stopping.is_set():
                report.stopped = True
                if self.auth_failure is not None:
                    self.metrics.pass_failures.labels(reason="token_rejected").inc()
                return report
            # Expired claims (their owner died mid-call) lie in the due range: the claims of
            # the pipeline read them with the due chats and resolve them as ambiguous.
            await self._pipeline(report)
            if not report.interrupted and self.auth_failure is None:
                # Only a pass that claimed and recorded against the ledger counts as done:
                # an alert on this timestamp fires while the ledger (or the token) is down.
                self.metrics.pass_succeeded.set(time.time())
            else:
                reason = "token_rejected" if self.auth_failure is not None else "ledger"
                self.metrics.pass_failures.labels(reason=reason).inc()
            return report
        except LedgerUnavailable:
            self.metrics.pass_failures.labels(reason="ledger").inc()
            raise
        finally:
            report.finished_at = clock.now()
            elapsed = time.monotonic() - t0
            self.metrics.pass_finished.set(time.time())
            self.metrics.pass_duration.set(elapsed)
            if report.ambiguous_resolved:
                self.metrics.ambiguous_resolved.inc(report.ambiguous_resolved)
                self.metrics.ambiguous_attempts.inc(report.ambiguous_resolved)
                log.warning("share.ambiguous_resolved", count=report.ambiguous_resolved)
            log.info("pass.finished", seconds=round(elapsed, 3), **report.as_dict())
            bound.__exit__(None, None, None)

    def _patience(self) -> float:
        """How long outcomes wait for an unreachable ledger: half the lease."""
        return self.config.lease.total_seconds() / 2

    async def _pipeline(self, report: PassReport) -> None:
        cfg = self.config
        writer = OutcomeWriter(
            self.ledger, self.policy, patience=self._patience(), on_recorded=self._recorded
        )
        recorder = _Recorder(writer)
        unstarted: list[Claim] = []
        claimer = _Claimer(
            functools.partial(self._select, report, recorder),
            workers=cfg.concurrency,
            ahead=CLAIMS_AHEAD_PER_WORKER * cfg.concurrency,
        )
        recorder_task = asyncio.create_task(recorder.run(), name="share-recorder")
        workers = [
            asyncio.create_task(self._worker(claimer, recorder, unstarted, report))
            for _ in range(cfg.concurrency)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            unstarted.extend(await asyncio.shield(claimer.close()))
            recorder.closed = True
            recorder.wake.set()
            # Outcomes and releases must reach the ledger even when the pass is cancelled.
            await asyncio.shield(self._finish(recorder, recorder_task, unstarted, report))

    async def _finish(
        self,
        recorder: _Recorder,
        recorder_task: asyncio.Task[None],
        unstarted: list[Claim],
        report: PassReport,
    ) -> None:
        await asyncio.gather(recorder_task, return_exceptions=True)
        await recorder.flush()
        if unstarted:
            await retry_while_unavailable(
                lambda: release_claims(self.ledger, unstarted, self.policy, clock.now()),
                self._patience(),
            )
            report.released += len(unstarted)
            log.info("share.claims_released", count=len(unstarted))

    async def _select(
        self, report: PassReport, recorder: _Recorder, wanted: int
    ) -> list[Claim] | None:
        """The select step: claim up to ``wanted`` due chats, writing the outcomes buffered
        meanwhile in the same transaction; ``None`` when the pass has nothing more to do."""
        cfg = self.config
        while not self.stopping.is_set() and self.auth_failure is None:
            records = recorder.take()
            try:
                lost, result = await record_and_claim(
                    self.ledger,
                    records,
                    now=clock.now(),
                    limit=min(cfg.batch_size, wanted),
                    instance=self.instance,
                    lease=cfg.lease,
                    policy=self.policy,
                )
            except BaseException as exc:
                # Not written: the recorder writes these outcomes, waiting for the ledger as
                # long as their claims last.
                recorder.give_back(records)
                if not isinstance(exc, LedgerUnavailable):
                    raise
                # Finish what is claimed; the next pass picks up the rest.
                log.warning("pass.claims_interrupted", error=str(exc))
                report.interrupted = True
                return None
            recorder.writer.written(records, lost)
            report.ambiguous_resolved += result.ambiguous
            report.claimed += len(result.claims)
            if result.claims:
                return result.claims
            if not (result.ambiguous or result.rescheduled):
                return None
        return None

    async def _worker(
        self,
        claimer: _Claimer,
        recorder: _Recorder,
        unstarted: list[Claim],
        report: PassReport,
    ) -> None:
        loop = asyncio.get_running_loop()
        previous: float | None = None  # when this worker got its last claim
        while not self.stopping.is_set() and self.auth_failure is None:
            # The turn under the rate limit first: the claim asked for next is sent at once.
            await self.limiter.acquire()
            claim = await claimer.next(previous)
            previous = loop.time()
            if claim is None:
                return
            if (
                self.stopping.is_set()
                or self.auth_failure is not None
                or (claim.line is not None and claim.line in self.blocked_lines)
            ):
                unstarted.append(claim)
                continue
            record = await self.caller.call(claim, on_cut_short=recorder.add, turn_taken=True)
            recorder.add(record)
            self._observe(record, report)

    def _observe(self, record: CallRecord, report: PassReport) -> None:
        d = record.decision
        report.outcomes[d.outcome] += 1
        observe_outcome(record, self.metrics)
        if d.stop_all and self.auth_failure is None:
            self.auth_failure = d.error or "the Linq API token was rejected"
            log.error("linq.unauthorized", error=self.auth_failure)
        line = record.claim.line
        if d.line_card_state is not None and line is not None and line not in self.blocked_lines:
            self.blocked_lines.add(line)
            log.warning("line.card_unusable", line=line, state=d.line_card_state)

    def _recorded(self, batch: list[CallRecord]) -> None:
        """After outcomes commit: ask for the card reads that their 2012s call for.

        Not sooner: a card read that raced ahead of the outcome's write would be overwritten
        by the stale "not active" it records.
        """
        for record in batch:
            line = record.claim.line
            if (
                record.decision.line_card_state is not None
                and line is not None
                and line not in self._rechecked
            ):
                self._rechecked.add(line)
                if self.on_card_unusable is not None:
                    self.on_card_unusable(line)
