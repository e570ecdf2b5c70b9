"""The exception hierarchy: everything raised on purpose derives from ShareSchedulerError."""

from __future__ import annotations

from dataclasses import dataclass


class ShareSchedulerError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code: int = 1


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ShareSchedulerError):
    """The schedule file is missing, unreadable or invalid."""

    exit_code = 2

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(str(p) for p in problems)
        super().__init__(f"{source}: {lines}")


class LedgerError(ShareSchedulerError):
    """The ledger database cannot be reached or used."""


class LedgerUnavailable(LedgerError):
    """The database did not answer (connection refused, timed out, shut down)."""


class LedgerMissing(LedgerError):
    """A SQLite ledger file that does not exist, opened by a command that must not create it."""

    exit_code = 2


class SchemaOutOfDate(LedgerError):
    """The database schema is not at the revision this version needs."""

    exit_code = 3


class UnknownRevision(LedgerError):
    """``db upgrade --revision`` / ``db downgrade`` named a revision that cannot be reached."""

    exit_code = 2


class LedgerInUse(LedgerError):
    """Another daemon owns this SQLite ledger (one daemon per file; replicas need PostgreSQL)."""

    exit_code = 4


class ListenFailed(ShareSchedulerError):
    """The webhook server cannot listen on ``webhooks.listen`` (most often: address in use)."""

    exit_code = 5


class NotFound(ShareSchedulerError):
    """A chat or line named on the command line does not exist in the ledger."""


class AmbiguousPrefix(ShareSchedulerError):
    """A chat id prefix given on the command line matches more than one chat."""


class LinqError(ShareSchedulerError):
    """A call to the Linq API failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.trace_id = trace_id
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.trace_id:
            text += f" (trace_id {self.trace_id})"
        return text


class LinqTransportError(LinqError):
    """The request did not complete: connect failure, timeout, reset."""

    def __init__(self, message: str, *, sent: bool) -> None:
        # sent=True: the request may have reached Linq (read timeout, reset after writing).
        self.sent = sent
        super().__init__(message)


class LinqAPIError(LinqError):
    """Linq answered with an error envelope."""


class BadRequest(LinqAPIError):
    """400, codes 1001-1005: the request is wrong; never retried."""


class Unauthorized(LinqAPIError):
    """401 / 2004: the API token is missing or invalid."""


class AccessDenied(LinqAPIError):
    """403 / 2005: the number is not on this account."""


class OptedOut(LinqAPIError):
    """403 / 2024: the recipient opted out (account-wide, until they write again)."""


class HandleBlocked(LinqAPIError):
    """403 / 2026: the recipient's handle is blocked by our own account."""


class LineIneligible(LinqAPIError):
    """403 / 2027: the line is not eligible to send now (reads keep working)."""


class ChatNotFound(LinqAPIError):
    """404 / 2001."""


class CardNotActive(LinqAPIError):
    """404 / 2012: no active contact card for the chat's number."""


class CardExists(LinqAPIError):
    """409 / 2014: a card already exists for that number."""


class RateLimited(LinqAPIError):
    """429 / 1007."""


class CardSetupIncomplete(LinqAPIError):
    """500 / 2022: the card write did not complete."""


class CardWriteThrottled(LinqAPIError):
    """503 / 4004: the upstream card write was rate-limited."""


class ServerError(LinqAPIError):
    """5xx / 3xxx."""
