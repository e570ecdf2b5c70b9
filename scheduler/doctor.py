"""``doctor``: is this installation able to share? One verdict per check.

Checks, in order: the schedule file is valid; the ledger database answers; its schema is
current; the API token is set and accepted (``GET /v3/contact_card``); each line's card is
active (a card declared but not created yet is a warning: the daemon creates it); no line is
paused or ineligible (a warning); a webhook signing secret is set; this host's clock agrees
with Linq's (the ``Date`` of its answer): a skewed clock rejects good webhooks and shifts share
days; and, when a daemon answers on ``webhooks.listen``, the skew it measures from signed
webhook timestamps. A check that cannot run because an earlier one failed is reported as
``skip``. ``warn`` is worth a look but does not stop sharing; ``fail`` and ``skip`` do.
Details never carry a secret.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from scheduler import clock
from scheduler.config import Schedule, Secrets, load_schedule, resolve_secrets
from scheduler.errors import ConfigError, LedgerError, LinqError, Unauthorized
from scheduler.ledger import schema
from scheduler.ledger.diagnostics import LineStanding, line_standings, ping
from scheduler.ledger.engine import Ledger
from scheduler.linq.client import LinqClient
from scheduler.linq.types import ContactCard
from scheduler.logs import redact_text

__all__ = ["MAX_CLOCK_SKEW", "Check", "Status", "run_doctor"]

Status = Literal["ok", "warn", "fail", "skip"]
MAX_CLOCK_SKEW = timedelta(seconds=60)
_DB_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "skip")

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


class _Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, redact_text(detail)))


async def run_doctor(
    config: Path | None,
    *,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Check]:
    env = os.environ if env is None else env
    report = _Report()
    schedule = _check_config(report, config, database_url, env)
    if schedule is None:
        for name in ("database", "schema", "token", "cards", "webhook secret", "clock"):
            report.add(name, "skip", "needs a valid schedule file")
        return report.checks
    secrets, problems = resolve_secrets(schedule, env)
    known_lines = await _check_ledger(report, schedule)
    cards, client = await _check_token(report, schedule, secrets, problems)
    _check_cards(report, schedule, {n: line.chats for n, line in known_lines.items()}, cards)
    _check_lines(report, known_lines)
    _check_webhook_secret(report, schedule, secrets, problems)
    _check_clock(report, client)
    await _check_webhook_clock(report, schedule)
    return report.checks


def _check_config(
    report: _Report, config: Path | None, database_url: str | None, env: Mapping[str, str]
) -> Schedule | None:
    if config is None:
        report.add("config", "fail", "no schedule file: give --config FILE")
        return None
    try:
        schedule, _ = load_schedule(
            config, env=env, require_secrets=False, database_url=database_url
        )
    except ConfigError as exc:
        report.add("config", "fail", "; ".join(str(p) for p in exc.problems))
        return None
    report.add(
        "config",
        "ok",
        f"{config} is valid ({len(schedule.lines)} line(s), window "
        f"{schedule.sharing.window.start:%H:%M}-{schedule.sharing.window.end:%H:%M} "
        f"{schedule.sharing.timezone})",
    )
    return schedule


def _line_states(line: LineStanding) -> list[str]:
    """Why the line shares nothing now, one phrase per state (none: it may share)."""
    found = []
    if line.paused:
        found.append("paused by an operator (`share-scheduler line resume` ends it)")
    if line.ineligible is not None:
        ineligible = line.ineligible
        # Linq refuses activity on the line (2027, FLAGGED): its chats wait.
        found.append(
            f"not eligible to send since {_iso(ineligible.ineligible_since)}"
            f" ({ineligible.reason or 'no reason given'}); sharing on it waits, next probe"
            f" at {_iso(ineligible.probe_at) if ineligible.probe_at else 'unknown'}, or resumes"
            " when Linq reports the line ACTIVE"
        )
    return found


async def _check_ledger(report: _Report, schedule: Schedule) -> dict[str, LineStanding]:
    """Database and schema checks; return the ledger's lines with their chats and states."""
    ledger = Ledger.from_config(schedule.database)
    try:
        try:
            async with asyncio.timeout(_DB_TIMEOUT):
                await ping(ledger)
        except (LedgerError, TimeoutError, OSError) as exc:
            report.add("database", "fail", f"{ledger.url}: {exc or 'timed out'}")
            report.add("schema", "skip", "needs the database")
            return {}
        report.add("database", "ok", f"{ledger.url} answers")
        current = await schema.current_revision(ledger)
        head = schema.head_revision()
        if current != head:
            report.add(
                "schema",
                "fail",
                f"at {current or 'nothing (empty database)'}, this version needs {head}: "
                "run `share-scheduler db upgrade`",
            )
            return {}
        report.add("schema", "ok", f"at {head} (current)")
        return {line.number: line for line in await line_standings(ledger)}
    except LedgerError as exc:
        report.add("schema", "fail", str(exc))
        return {}
    finally:
        await ledger.dispose()


async def _check_token(
    report: _Report, schedule: Schedule, secrets: Secrets, problems: list[Any]
) -> tuple[list[ContactCard] | None, LinqClient | None]:
    if secrets.api_key is None:
        missing = [str(p) for p in problems if str(p.path).startswith("linq.")]
        report.add("token", "fail", "; ".join(missing) or "no API token configured")
        return None, None
    source = secrets.api_key.source
    try:
        client = LinqClient.from_config(schedule.linq, secrets.api_key)
    except ValueError as exc:
        report.add("token", "fail", str(exc))
        return None, None
    try:
        cards = await client.get_contact_cards()
    except Unauthorized as exc:
        report.add("token", "fail", f"the token from {source} was rejected: {exc}")
        return None, client
    except LinqError as exc:
        report.add("token", "fail", f"{client.base_url} did not answer as Linq: {exc}")
        return None, client
    finally:
        await client.aclose()
    report.add(
        "token",
        "ok",
        f"the token from {source} is accepted by {client.base_url} "
        f"({len(cards)} cards on the account)",
    )
    return cards, client


def _check_lines(report: _Report, known_lines: dict[str, LineStanding]) -> None:
    """A warning per line that shares nothing because of its state (paused...)."""
    for number, line in known_lines.items():
        states = _line_states(line)
        if states:
            report.add(f"line {number}", "warn", f"{'; '.join(states)}; {line.chats} chats")


def _check_cards(
    report: _Report,
    schedule: Schedule,
    known_lines: dict[str, int],
    cards: list[ContactCard] | None,
) -> None:
    numbers = sorted({line.number for line in schedule.lines} | set(known_lines))
    if cards is None:
        report.add("cards", "skip", "needs an accepted token")
        return
    if not numbers:
        report.add("cards", "warn", "no lines configured or known to the ledger yet")
        return
    by_number = {card.phone_number: card for card in cards}
    for number in numbers:
        card = by_number.get(number)
        chats_note = f"; {known_lines[number]} chats" if known_lines.get(number) else ""
        if card is None:
            declared = schedule.line(number)
            if declared is not None and declared.card is not None:
                # A fresh install: the daemon writes declared cards at its first card check.
                report.add(
                    f"card {number}",
                    "warn",
                    "declared in the schedule, not created yet: the daemon creates it at its "
                    "first card check (or run `share-scheduler cards sync`)" + chats_note,
                )
            else:
                report.add(
                    f"card {number}",
                    "fail",
                    "no card on Linq: nothing on this line is shared" + chats_note,
                )
        elif card.is_active:
            name = " ".join(p for p in (card.first_name, card.last_name) if p)
            report.add(f"card {number}", "ok", f"active ({name}){chats_note}")
        else:
            report.add(
                f"card {number}",
                "warn",
                "created, not active yet: sharing starts when Linq activates it" + chats_note,
            )


def _check_webhook_secret(
    report: _Report, schedule: Schedule, secrets: Secrets, problems: list[Any]
) -> None:
    if not schedule.webhooks.enabled:
        report.add("webhook secret", "ok", "webhooks are disabled")
        return
    hook_problems = [str(p) for p in problems if str(p.path).startswith("webhooks.")]
    if not secrets.webhook_secrets:
        report.add("webhook secret", "fail", "; ".join(hook_problems) or "no signing secret")
        return
    sources = ", ".join(s.source for s in secrets.webhook_secrets)
    status: Status = "warn" if hook_problems else "ok"
    detail = f"{len(secrets.webhook_secrets)} signing secret(s) from {sources}"
    if hook_problems:
        detail += "; " + "; ".join(hook_problems)
    report.add("webhook secret", status, detail)


def _check_clock(report: _Report, client: LinqClient | None) -> None:
    now = clock.now()
    offset = ""
    if os.environ.get(clock.CLOCK_FILE_ENV):
        offset = f" (shifted by {clock.CLOCK_FILE_ENV})"
    header = client.server_date if client is not None else None
    if header is None:
        report.add("clock", "warn", f"{_iso(now)}{offset}; no answer from Linq to compare with")
        return
    try:
        server = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        report.add("clock", "warn", f"{_iso(now)}{offset}; Linq sent an unreadable Date header")
        return
    skew = now - server
    seconds = skew.total_seconds()
    detail = f"{_iso(now)}{offset}, {seconds:+.0f}s from Linq's clock"
    if abs(skew) > MAX_CLOCK_SKEW:
        report.add(
            "clock",
            "fail",
            f"{detail}: beyond {MAX_CLOCK_SKEW.total_seconds():.0f}s, webhooks are rejected as "
            "stale and share days shift; fix NTP",
        )
        return
    report.add("clock", "ok", detail)


SKEW_METRIC = "share_scheduler_webhook_clock_skew_seconds"


def webhook_clock_verdict(metrics_text: str, tolerance: float) -> tuple[Status, str] | None:
    """The running daemon's measured webhook clock skew, judged against the tolerance."""
    for line in metrics_text.splitlines():
        if line.startswith(SKEW_METRIC + " "):
            try:
                skew = float(line.split()[1])
            except (IndexError, ValueError):
                return None
            detail = (
                f"{skew:+.0f}s between this host and the webhook signer (median of recent "
                f"signed deliveries; tolerance {tolerance:.0f}s)"
            )
            if abs(skew) > tolerance:
                return "fail", f"{detail}: every webhook is rejected as stale; fix NTP"
            if abs(skew) > tolerance / 2:
                return "warn", f"{detail}: near the tolerance"
            return "ok", detail
    return None


async def _check_webhook_clock(report: _Report, schedule: Schedule) -> None:
    """Ask the running daemon (if one answers on webhooks.listen) what it measures."""
    if not schedule.webhooks.enabled:
        return
    host = schedule.webhooks.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{schedule.webhooks.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = await http.get(url)
    except httpx.HTTPError:
        return  # no daemon running here: nothing measured to report
    if answer.status_code != 200:
        return
    verdict = webhook_clock_verdict(answer.text, schedule.webhooks.tolerance.total_seconds())
    if verdict is not None:
        report.add("webhook clock", *verdict)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
