"""Card sync, the I/O shell around the pure plan and budget: read, plan, write, record.

One run:
1. ``GET /v3/contact_card`` (all cards at once) and record what each line's card is; lines
   whose card turned active or inactive get their chats recomputed at once (due now when
   active and inside the window; never due while inactive, with no chat's day spent);
2. for every line that declares a card, plan (:func:`scheduler.core.card_plan.plan_card`) and
   carry out creates and patches within the number's write budget;
3. report when the next run is needed (an activation poll, the end of a wait), so that the
   daemon can run the job sooner than its interval.

A write is claimed in the ledger before it is sent (:func:`scheduler.ledger.cards.claim_write`):
the transaction locks the line row, plans again from what is committed, spends one slot of the
budget and takes a short lease on the card, so that two replicas (or the daemon and ``cards
sync``) never write the same card twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from scheduler import clock
from scheduler.cards.observe import log_transitions, observed, record_observed_cards
from scheduler.config import CardsConfig, Schedule
from scheduler.core.card_budget import WriteBudget, WriteResult, classify
from scheduler.core.card_plan import Action, CardPlan, CardView, plan_card
from scheduler.core.line import CardTransition, Line
from scheduler.core.rule import Policy
from scheduler.core.status import CardState
from scheduler.errors import CardNotActive, LinqError, Unauthorized
from scheduler.ledger import cards as ledger_cards
from scheduler.ledger import lines as ledger_lines
from scheduler.ledger.engine import Ledger
from scheduler.ledger.recompute import reschedule_marked_lines
from scheduler.linq.client import LinqClient
from scheduler.linq.types import ContactCard
from scheduler.metrics import Metrics

log = structlog.get_logger("scheduler.cards")

# Bounds the follow-ups inside one run (2014 -> PATCH, 2012 on PATCH -> POST).
MAX_WRITES_PER_LINE_RUN = 2


def view_of(line: Line) -> CardView:
    """What the plan sees of a line: its desired and observed card, its budget."""
    seen = line.card_state not in (CardState.absent, CardState.unknown)
    return CardView(
        desired=line.desired,
        observed=line.card if seen else None,
        state=line.card_state,
        budget=line.write_budget,
        written_at=line.card_written_at,
    )


@dataclass(frozen=True, slots=True)
class WriteRecord:
    line: str
    action: Action
    fields: tuple[str, ...]
    result: WriteResult
    at: datetime
    code: int | None = None
    error: str | None = None
    wait_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "action": str(self.action),
            "fields": list(self.fields),
            "result": str(self.result),
            "at": self.at,
            "code": self.code,
            "error": self.error,
            "wait_until": self.wait_until,
        }


@dataclass
class SyncReport:
    started_at: datetime
    read_ok: bool = False
    error: str | None = None
    cards_seen: int = 0
    transitions: list[CardTransition] = field(default_factory=list)
    writes: list[WriteRecord] = field(default_factory=list)
    plans: dict[str, CardPlan] = field(default_factory=dict)
    wake_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_ok": self.read_ok,
            "error": self.error,
            "cards_seen": self.cards_seen,
            "transitions": [
                {"line": t.line, "before": t.before, "after": t.after} for t in self.transitions
            ],
            "writes": [w.as_dict() for w in self.writes],
            "lines": {number: plan.as_dict() for number, plan in sorted(self.plans.items())},
            "wake_at": self.wake_at,
        }


class CardSync:
    """Runs card syncs for one daemon (or one ``cards sync`` command)."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        client: LinqClient,
        config: CardsConfig,
        policy: Policy,
        write_lease: timedelta,
        metrics: Metrics | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.config = config
        self.policy = policy
        self.write_lease = write_lease
        self.metrics = metrics or Metrics()
        # Set on shutdown: a reschedule of many chats ends at its next batch (the line stays
        # marked, and the next start finishes it).
        self.stop = stop

    @classmethod
    def from_schedule(
        cls,
        schedule: Schedule,
        *,
        ledger: Ledger,
        client: LinqClient,
        policy: Policy,
        metrics: Metrics | None = None,
        stop: asyncio.Event | None = None,
    ) -> CardSync:
        return cls(
            ledger=ledger,
            client=client,
            config=schedule.cards,
            policy=policy,
            write_lease=lease_for(schedule),
            metrics=metrics,
            stop=stop,
        )

    def reconfigure(self, schedule: Schedule, policy: Policy) -> None:
        self.config = schedule.cards
        self.policy = policy
        self.write_lease = lease_for(schedule)

    def plan(self, view: CardView, now: datetime) -> CardPlan:
        cfg = self.config
        return plan_card(
            view,
            now,
            activation_timeout=cfg.activation_timeout,
            poll_first=cfg.activation_poll,
            poll_most=cfg.check_interval,
        )

    # -- one run ---------------------------------------------------------------------------

    async def run(self) -> SyncReport:
        """Read every card, record it, bring declared cards in line. Raises Unauthorized."""
        report = SyncReport(started_at=clock.now())
        # Reschedules that a crash or a stop cut short (or that another process left marked).
        await self._reschedule_marked(None)
        try:
            cards = await self.client.get_contact_cards()
        except Unauthorized:
            raise
        except LinqError as exc:
            report.error = str(exc)
            log.warning("card.check_failed", error=str(exc), trace_id=exc.trace_id)
            return report
        report.read_ok = True
        report.cards_seen = len(cards)
        transitions = await record_observed_cards(
            self.ledger, cards, clock.now(), seen_at=report.started_at
        )
        await self._reschedule(transitions, report)
        for line in await ledger_lines.declared(self.ledger):
            # Cheap pre-check on what was just read; the claim plans again under a lock.
            if self.plan(view_of(line), clock.now()).writes:
                await self._bring_in_line(line.number, report)
        for line in await ledger_lines.declared(self.ledger):
            plan = self.plan(view_of(line), clock.now())
            report.plans[line.number] = plan
            if plan.action == Action.activation_timeout:
                await self._give_up(line.number, line.card_written_at)
            elif plan.action == Action.wait_budget:
                log.debug(
                    "card.write_deferred",
                    line=line.number,
                    write=str(plan.via),
                    fields=sorted(plan.fields),
                    until=plan.at.isoformat() if plan.at else None,
                )
            if plan.at is not None and (report.wake_at is None or plan.at < report.wake_at):
                report.wake_at = plan.at
        return report

    async def _reschedule(self, transitions: list[CardTransition], report: SyncReport) -> None:
        report.transitions.extend(transitions)
        numbers = [t.line for t in transitions if t.activity_changed]
        if numbers:
            await self._reschedule_marked(numbers)

    async def _reschedule_marked(self, numbers: list[str] | None) -> None:
        done = await reschedule_marked_lines(
            self.ledger, self.policy, numbers=numbers, stop=self.stop
        )
        for number, changed in done.items():
            log.info("line.chats_rescheduled", line=number, chats=changed)

    async def _bring_in_line(self, number: str, report: SyncReport) -> None:
        for _ in range(MAX_WRITES_PER_LINE_RUN):
            claimed = await self._claim_write(number)
            if claimed is None:
                return
            plan, reserved_at = claimed
            record = await self._write(number, plan, reserved_at, report)
            report.writes.append(record)
            if record.result in (WriteResult.ok, WriteResult.rate_limited):
                return
            # The card is not what we last saw (2014, 2012) or a failed write may have changed
            # it (4004 stores it inactive): read this one number again, which costs no budget.
            if not await self._reread(number, report):
                return
            if record.result not in (WriteResult.exists, WriteResult.missing):
                return

    async def _claim_write(self, number: str) -> tuple[CardPlan, datetime] | None:
        """Plan again from the committed line and, if a write is due, spend a slot for it."""

        def reserve(line: Line) -> tuple[tuple[CardPlan, datetime], WriteBudget] | None:
            now = clock.now()
            view = view_of(line)
            plan = self.plan(view, now)
            if not plan.writes:
                return None
            return (plan, now), view.budget.reserve(now, self.write_lease)

        return await ledger_cards.claim_write(self.ledger, number, reserve)

    async def _write(
        self, number: str, plan: CardPlan, reserved_at: datetime, report: SyncReport
    ) -> WriteRecord:
        card: ContactCard | None = None
        error: LinqError | None = None
        bound = structlog.contextvars.bound_contextvars(line=number)
        with bound:
            try:
                if plan.action == Action.create:
                    card = await self.client.create_contact_card(number, **plan.fields)
                else:
                    card = await self.client.update_contact_card(number, **plan.fields)
            except LinqError as exc:
                error = exc
            finally:
                finished = clock.now()
            result = classify(error)
            wait_until = await self._settle(
                number, reserved_at, finished, result, error, card, report
            )
            self.metrics.card_writes.labels(line=number, result=str(result)).inc()
            record = WriteRecord(
                line=number,
                action=plan.action,
                fields=tuple(sorted(plan.fields)),
                result=result,
                at=finished,
                code=error.code if error is not None else None,
                error=str(error) if error is not None else None,
                wait_until=wait_until,
            )
            _log_write(record, error)
        if isinstance(error, Unauthorized):
            raise error
        return record

    async def _settle(
        self,
        number: str,
        reserved_at: datetime,
        finished: datetime,
        result: WriteResult,
        error: LinqError | None,
        card: ContactCard | None,
        report: SyncReport,
    ) -> datetime | None:
        """Record the answer: the budget, the card Linq returned, the line's error."""
        retry_after = error.retry_after if error is not None else None

        def settle(budget: WriteBudget) -> WriteBudget:
            return budget.settle(
                reserved_at,
                finished,
                result,
                retry_after=retry_after,
                retry_base=self.config.retry_wait,
            )

        def line_error(budget: WriteBudget) -> str:
            return _line_error(result, error, budget.next_write_at)

        accepted = observed(card) if result == WriteResult.ok and card is not None else None
        # 2014 and 2012 are followed up at once; a rejected token is the token's, not the line's.
        keeps_error = result in (WriteResult.exists, WriteResult.missing, WriteResult.unauthorized)
        recorded = await ledger_cards.record_write(
            self.ledger,
            number,
            at=finished,
            settle=settle,
            accepted=accepted,
            line_error=None if accepted is not None or keeps_error else line_error,
        )
        if recorded is None:
            return None
        budget, transitions = recorded
        log_transitions(transitions)
        await self._reschedule(transitions, report)
        return budget.next_write_at

    async def _reread(self, number: str, report: SyncReport) -> bool:
        seen_at = clock.now()
        try:
            cards = await self.client.get_contact_cards(number)
        except CardNotActive:
            cards = []  # 404/2012 on a one-number read: no card
        except LinqError as exc:
            log.warning("card.check_failed", line=number, error=str(exc), trace_id=exc.trace_id)
            if isinstance(exc, Unauthorized):
                raise
            return False
        transitions = await record_observed_cards(
            self.ledger, cards, clock.now(), numbers=[number], seen_at=seen_at
        )
        await self._reschedule(transitions, report)
        return True

    async def _give_up(self, number: str, written_at: datetime | None) -> None:
        timeout = self.config.activation_timeout
        message = (
            f"card written at {written_at.isoformat() if written_at else '?'} "
            f"is still not active after {_human(timeout)}; no more writes until the card in "
            "the schedule changes"
        )
        if not await ledger_cards.give_up_activation(
            self.ledger, number, written_at, message, clock.now()
        ):
            return  # another replica gave up on this write first
        self.metrics.card_activation_timeouts.labels(line=number).inc()
        log.error(
            "card.activation_timeout",
            line=number,
            written_at=written_at.isoformat() if written_at else None,
            timeout_seconds=timeout.total_seconds(),
        )


def lease_for(schedule: Schedule) -> timedelta:
    """How long a write in flight keeps other writers off the card: the call's timeout, twice."""
    return schedule.linq.timeout * 2 + timedelta(seconds=5)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _line_error(result: WriteResult, error: LinqError | None, until: datetime | None) -> str:
    text = str(error) if error is not None else str(result)
    if result == WriteResult.rejected:
        return f"card write refused: {text}; not retried until the card in the schedule changes"
    if until is not None:
        return f"card write failed: {text}; next try at {until.isoformat()}"
    return f"card write failed: {text}"


def _log_write(record: WriteRecord, error: LinqError | None) -> None:
    fields = {
        "line": record.line,
        "write": str(record.action),
        "fields": list(record.fields),
        "result": str(record.result),
        "trace_id": error.trace_id if error is not None else None,
    }
    if record.result == WriteResult.ok:
        log.info("card.written", **fields)
    elif record.result == WriteResult.exists:
        log.info("card.exists", **fields)
    elif record.result == WriteResult.missing:
        log.info("card.missing", **fields)
    elif record.result == WriteResult.rejected:
        log.error("card.write_rejected", code=record.code, error=record.error, **fields)
    elif record.result == WriteResult.unauthorized:
        log.error("linq.unauthorized", error=record.error, **fields)
    else:
        log.warning(
            "card.write_failed",
            code=record.code,
            error=record.error,
            wait_until=record.wait_until.isoformat() if record.wait_until else None,
            **fields,
        )
