"""``ledger import``: chats from a CSV or JSONL file, for ops who already have the data.

Every row is validated on its own; a bad row is reported with its line number and skipped,
and the good rows are written in one transaction, so a failure leaves nothing half-written.
Rows merge into the ledger like webhook activity does: first times take the minimum, last
times the maximum, so an import never undoes fresher knowledge. Imported service and
``is_group`` only fill what the ledger does not know, and an imported status applies only to
chats the ledger has as active (an import never re-activates a paused, opted-out or gone
chat).

Columns (CSV header, or JSONL keys): ``chat_id`` and ``line`` (required), ``recipient`` or
``recipients``, ``service``, ``is_group``, ``first_outbound_at``, ``last_outbound_at``,
``last_inbound_at``, ``last_shared_at``, ``share_count``, ``status``. Times are ISO-8601;
without an offset they are UTC.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from scheduler.config import E164
from scheduler.errors import ShareSchedulerError
from scheduler.ingest.apply import Merge, UpsertCounts, upsert_chats
from scheduler.ingest.events import EARLIEST, MAX_ID_LENGTH, ChatActivity
from scheduler.ingest.merge import merge_activity
from scheduler.ledger.engine import Ledger
from scheduler.ledger.models import ChatStatus
from scheduler.rule import Policy

COLUMNS = (
    "chat_id",
    "line",
    "recipient",
    "recipients",
    "service",
    "is_group",
    "first_outbound_at",
    "last_outbound_at",
    "last_inbound_at",
    "last_shared_at",
    "share_count",
    "status",
)
REQUIRED = ("chat_id", "line")
SERVICES = {"imessage": "iMessage", "sms": "SMS", "rcs": "RCS"}
STATUSES = {s.value: s for s in ChatStatus}
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}
_EMAIL = re.compile(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+")
_SPLIT = re.compile(r"[,;\s]+")
# Activity cannot lie ahead of the clock; a day of slack covers skewed exporters.
FUTURE_SLACK = timedelta(days=1)
MAX_SHARE_COUNT = 1_000_000


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class ImportFileError(ShareSchedulerError):
    """The file as a whole cannot be imported (unreadable, no usable header...)."""

    exit_code = 2


class RowError(ValueError):
    """One row is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    line_no: int
    chat_id: str
    line: str
    recipients: tuple[str, ...] = ()
    service: str | None = None
    is_group: bool | None = None
    first_outbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_shared_at: datetime | None = None
    share_count: int | None = None
    status: ChatStatus | None = None


@dataclass(frozen=True, slots=True)
class RowProblem:
    line_no: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    path: str
    format: Format
    dry_run: bool
    rows: int = 0
    accepted: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "format": self.format.value,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "accepted": self.accepted,
            "created": self.counts.created,
            "updated": self.counts.updated,
            "unchanged": self.counts.unchanged,
            "rejected": [{"line": p.line_no, "error": p.message} for p in self.rejected],
        }


def detect_format(path: Path, given: Format | None) -> Format:
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return Format.csv
    if suffix in (".jsonl", ".ndjson"):
        return Format.jsonl
    raise ImportFileError(
        f"{path}: cannot tell the format from the name; give --format csv or --format jsonl"
    )


# -- one row ---------------------------------------------------------------------------------


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"{name}: expected text, got {type(value).__name__}")
    value = value.strip()
    return value or None


def _chat_id(value: Any) -> str:
    text = _text(value, "chat_id")
    if text is None:
        raise RowError("chat_id: missing")
    if len(text) > MAX_ID_LENGTH:
        raise RowError(f"chat_id: longer than {MAX_ID_LENGTH} characters")
    if not text.isprintable():
        raise RowError("chat_id: contains control characters")
    return text


def _line(value: Any) -> str:
    text = _text(value, "line")
    if text is None:
        raise RowError("line: missing")
    if not E164.fullmatch(text):
        raise RowError(f"line: {text[:40]!r} is not an E.164 phone number (+ then 8-15 digits)")
    return text


def _recipients(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v for v in _SPLIT.split(value) if v]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise RowError("recipients: expected text or a list of handles")
    for item in items:
        if not (E164.fullmatch(item) or _EMAIL.fullmatch(item)):
            raise RowError(f"recipients: {item[:40]!r} is not an E.164 number or an email")
    return tuple(dict.fromkeys(items))


def _service(value: Any) -> str | None:
    text = _text(value, "service")
    if text is None:
        return None
    service = SERVICES.get(text.lower())
    if service is None:
        raise RowError(f"service: {text[:40]!r} is not one of iMessage, SMS, RCS")
    return service


def _bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = _text(value, name)
    if text is None:
        return None
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise RowError(f"{name}: {text[:40]!r} is not true or false")


def _time(value: Any, name: str, now: datetime) -> datetime | None:
    text = _text(value, name)
    if text is None:
        return None
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(iso)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise RowError(f"{name}: {text[:40]!r} is not an ISO-8601 time") from exc
    if parsed < EARLIEST:
        raise RowError(f"{name}: {text[:40]!r} is before 2000")
    if parsed > now + FUTURE_SLACK:
        raise RowError(f"{name}: {text[:40]!r} is in the future")
    return parsed


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise RowError("share_count: expected a whole number")
    if isinstance(value, int):
        number = value
    else:
        text = _text(value, "share_count")
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()):
            raise RowError(f"share_count: {text[:40]!r} is not a whole number")
        number = int(text)
    if not 0 <= number <= MAX_SHARE_COUNT:
        raise RowError(f"share_count: {number} is out of range (0 to {MAX_SHARE_COUNT})")
    return number


def _status(value: Any) -> ChatStatus | None:
    text = _text(value, "status")
    if text is None:
        return None
    status = STATUSES.get(text.lower())
    if status is None:
        raise RowError(f"status: {text[:40]!r} is not one of {', '.join(STATUSES)}")
    return status


def validate_row(raw: dict[str, Any], line_no: int, now: datetime) -> ImportRow:
    """One row to an :class:`ImportRow`; raise RowError naming the first bad field."""
    unknown = [k for k in raw if k not in COLUMNS]
    if unknown:
        raise RowError(f"unknown field {unknown[0][:40]!r}")
    if raw.get("recipient") is not None and raw.get("recipients") is not None:
        raise RowError("give recipient or recipients, not both")
    recipients = _recipients(raw.get("recipients", raw.get("recipient")))
    is_group = _bool(raw.get("is_group"), "is_group")
    if is_group is None and len(recipients) > 1:
        is_group = True
    row = ImportRow(
        line_no=line_no,
        chat_id=_chat_id(raw.get("chat_id")),
        line=_line(raw.get("line")),
        recipients=recipients,
        service=_service(raw.get("service")),
        is_group=is_group,
        first_outbound_at=_time(raw.get("first_outbound_at"), "first_outbound_at", now),
        last_outbound_at=_time(raw.get("last_outbound_at"), "last_outbound_at", now),
        last_inbound_at=_time(raw.get("last_inbound_at"), "last_inbound_at", now),
        last_shared_at=_time(raw.get("last_shared_at"), "last_shared_at", now),
        share_count=_count(raw.get("share_count")),
        status=_status(raw.get("status")),
    )
    first, last = row.first_outbound_at, row.last_outbound_at
    if first is not None and last is not None and last < first:
        raise RowError("last_outbound_at is before first_outbound_at")
    if row.last_shared_at is not None:
        if first is None:
            raise RowError("last_shared_at needs first_outbound_at (a share follows an outbound)")
        if row.last_shared_at < first:
            raise RowError("last_shared_at is before first_outbound_at")
    return row


# -- the file --------------------------------------------------------------------------------


def _open(path: Path) -> io.TextIOWrapper:
    try:
        # utf-8-sig: spreadsheets like to start CSV files with a byte order mark.
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from exc


def _csv_records(path: Path, handle: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(handle)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line 1: {exc}") from exc
    if header is None:
        return
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ImportFileError(
            f"{path}: line 1: unknown column {unknown[0][:40]!r} (known: {', '.join(COLUMNS)})"
        )
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise ImportFileError(f"{path}: line 1: the header has no {missing[0]!r} column")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ImportFileError(f"{path}: line 1: column {duplicated[0]!r} appears twice")
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader, None)
        except csv.Error as exc:
            raise ImportFileError(f"{path}: line {start}: {exc}") from exc
        if values is None:
            return
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(names):
            yield start, RowError(f"expected {len(names)} fields, found {len(values)}")
            continue
        yield start, {k: (v if v.strip() else None) for k, v in zip(names, values, strict=True)}


def _jsonl_records(handle: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    for line_no, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            yield line_no, RowError("not valid JSON")
            continue
        if not isinstance(record, dict):
            yield line_no, RowError("expected a JSON object")
            continue
        yield line_no, record


def read_rows(path: Path, fmt: Format, now: datetime) -> tuple[list[ImportRow], list[RowProblem]]:
    """Validate every row; return the good ones and the problems, in file order."""
    good: list[ImportRow] = []
    problems: list[RowProblem] = []
    first_seen: dict[str, int] = {}
    with _open(path) as handle:
        records = _csv_records(path, handle) if fmt == Format.csv else _jsonl_records(handle)
        try:
            for line_no, record in records:
                try:
                    if isinstance(record, RowError):
                        raise record
                    row = validate_row(record, line_no, now)
                    if row.chat_id in first_seen:
                        raise RowError(
                            f"chat_id {row.chat_id[:40]!r} was already given on line "
                            f"{first_seen[row.chat_id]}"
                        )
                except RowError as exc:
                    problems.append(RowProblem(line_no, str(exc)))
                    continue
                first_seen[row.chat_id] = line_no
                good.append(row)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start} of a block)") from exc
    return good, problems


# -- the ledger ------------------------------------------------------------------------------


def row_merge(row: ImportRow) -> Merge:
    """The merge of one imported row into the chat's current columns."""
    acts = [
        ChatActivity(
            chat_id=row.chat_id,
            line=row.line,
            recipients=row.recipients or None,
            service=row.service,
            outbound_at=row.first_outbound_at,
            inbound_at=row.last_inbound_at,
            # Historical: the service only fills a gap, it never overrides what is known.
            historical=True,
        )
    ]
    if row.last_outbound_at is not None:
        acts.append(ChatActivity(chat_id=row.chat_id, outbound_at=row.last_outbound_at))

    def merge(current: dict[str, Any] | None) -> dict[str, Any]:
        chat = current
        for act in acts:
            chat = merge_activity(chat, act)
        assert chat is not None
        if current is None and row.is_group is not None:
            chat["is_group"] = row.is_group
        shared = row.last_shared_at
        if shared is not None and (
            chat["last_shared_at"] is None or chat["last_shared_at"] < shared
        ):
            chat["last_shared_at"] = shared
        count = row.share_count if row.share_count is not None else (1 if shared else 0)
        chat["share_count"] = max(chat["share_count"] or 0, count)
        if row.status is not None and (current is None or chat["status"] == ChatStatus.active):
            chat["status"] = row.status
        return chat

    return merge


async def import_rows(
    ledger: Ledger, rows: list[ImportRow], policy: Policy, now: datetime, *, dry_run: bool
) -> UpsertCounts:
    """Write ``rows`` in one transaction (or, dry, only count what would change)."""
    merges = {row.chat_id: row_merge(row) for row in rows}
    if dry_run:
        async with ledger.read() as conn:
            return await upsert_chats(conn, merges, policy, now, write=False)
    async with ledger.write() as conn:
        return await upsert_chats(conn, merges, policy, now)


async def import_file(
    ledger: Ledger,
    path: Path,
    policy: Policy,
    now: datetime,
    *,
    fmt: Format | None = None,
    dry_run: bool = False,
) -> ImportReport:
    chosen = detect_format(path, fmt)
    rows, problems = read_rows(path, chosen, now)
    report = ImportReport(str(path), chosen, dry_run)
    report.rows = len(rows) + len(problems)
    report.accepted = len(rows)
    report.rejected = problems
    report.counts = await import_rows(ledger, rows, policy, now, dry_run=dry_run)
    return report
