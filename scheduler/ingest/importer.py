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

import asyncio
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from scheduler import validate
from scheduler.core.event import ChatActivity, UpsertCounts
from scheduler.core.merge import MergedChat, merge_activity
from scheduler.core.rule import Policy
from scheduler.errors import ShareSchedulerError
from scheduler.ingest.events import EARLIEST
from scheduler.ledger.engine import Ledger
from scheduler.ledger.export import EXPORT_COLUMNS
from scheduler.ledger.ingest import Merge, MergeBatch, chat_merger
from scheduler.ledger.models import ChatStatus

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
# Columns of `ledger export` that an import accepts and ignores: the sharing rule recomputes
# next_share_at from the facts, failure back-off starts afresh, and the ledger stamps its own
# created_at/updated_at. So an export re-imports as it is.
EXPORT_ONLY = tuple(c for c in EXPORT_COLUMNS if c not in COLUMNS)
ACCEPTED = COLUMNS + EXPORT_ONLY
REQUIRED = ("chat_id", "line")
SERVICES = {"imessage": "iMessage", "sms": "SMS", "rcs": "RCS"}
STATUSES = {s.value: s for s in ChatStatus}
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}
_SPLIT = re.compile(r"[,;\s]+")
# Activity cannot lie ahead of the clock; a day of slack covers skewed exporters.
FUTURE_SLACK = timedelta(days=1)
MAX_SHARE_COUNT = 1_000_000
# Rows merged per statement round in the write pass: one batch is what an import holds.
IMPORT_BATCH = 2000
PROGRESS_EVERY = 50_000
# Called with the pass ("checked", "written", "counted") and the rows it has done.
Progress = Callable[[str, int], None]


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


def _checked(check: Callable[[str], str], value: str, name: str) -> str:
    try:
        return check(value)
    except validate.InvalidValue as exc:
        raise RowError(f"{name}: {exc}") from exc


def _raw_text(value: Any, name: str) -> str | None:
    """Text as given: surrounding whitespace is checked, not stripped (an id keeps its form)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"{name}: expected text, got {type(value).__name__}")
    # CSV cells padded with spaces are common; other surrounding characters are the value's.
    return value.strip(" ") or None


def _chat_id(value: Any) -> str:
    text = _raw_text(value, "chat_id")
    if text is None:
        raise RowError("chat_id: missing")
    return _checked(validate.check_identifier, text, "chat_id")


def _line(value: Any) -> str:
    text = _raw_text(value, "line")
    if text is None:
        raise RowError("line: missing")
    return _checked(validate.check_phone_number, text, "line")


def _recipients(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v for v in _SPLIT.split(value) if v]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip(" ") for v in value if v.strip(" ")]
    else:
        raise RowError("recipients: expected text or a list of handles")
    for item in items:
        _checked(validate.check_handle, item, "recipients")
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
    text = _raw_text(value, name)
    if text is None:
        return None
    _checked(validate.check_time_text, text, name)
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
    unknown = [k for k in raw if k not in ACCEPTED]
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
    unknown = [n for n in names if n not in ACCEPTED]
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
        except RecursionError:
            yield line_no, RowError("the JSON nests too deeply")
            continue
        if not isinstance(record, dict):
            yield line_no, RowError("expected a JSON object")
            continue
        yield line_no, record


def _records(path: Path, fmt: Format) -> Iterator[tuple[int, Any]]:
    """The file's records in order, as (line number, dict or RowError); streamed."""
    with _open(path) as handle:
        records = _csv_records(path, handle) if fmt == Format.csv else _jsonl_records(handle)
        try:
            yield from records
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start} of a block)") from exc


def _digest(chat_id: str) -> int:
    # 8 bytes a chat instead of the id and its row: two ids colliding is a 1-in-2**64 event
    # that would make the later row a "duplicate" of the earlier, never write a wrong row.
    return int.from_bytes(hashlib.blake2b(chat_id.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class _Scan:
    """What the validating pass found: the problems and which rows repeat a chat id."""

    rows: int = 0
    accepted: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    # Lines whose chat id was already given; the first line of each is found by the write pass.
    repeats: dict[int, tuple[int, str]] = field(default_factory=dict)


def _validated(
    path: Path, fmt: Format, now: datetime
) -> Iterator[tuple[int, ImportRow | RowError]]:
    for line_no, record in _records(path, fmt):
        if isinstance(record, RowError):
            yield line_no, record
            continue
        try:
            yield line_no, validate_row(record, line_no, now)
        except RowError as exc:
            yield line_no, exc


def scan_rows(path: Path, fmt: Format, now: datetime, progress: Progress | None = None) -> _Scan:
    """The first pass: validate every row, keeping only problems and 8-byte digests."""
    scan = _Scan()
    seen: set[int] = set()
    for line_no, row in _validated(path, fmt, now):
        scan.rows += 1
        if isinstance(row, RowError):
            scan.problems.append(RowProblem(line_no, str(row)))
        else:
            key = _digest(row.chat_id)
            if key in seen:
                scan.repeats[line_no] = (key, row.chat_id)
            else:
                seen.add(key)
                scan.accepted += 1
        if progress is not None and scan.rows % PROGRESS_EVERY == 0:
            progress("checked", scan.rows)
    return scan


def _problems(scan: _Scan, first_line: dict[int, int]) -> list[RowProblem]:
    repeated = [
        RowProblem(
            line_no,
            f"chat_id {chat_id[:40]!r} was already given on line {first_line.get(key, '?')}",
        )
        for line_no, (key, chat_id) in scan.repeats.items()
    ]
    return sorted(scan.problems + repeated, key=lambda p: p.line_no)


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

    def merge(current: MergedChat | None) -> MergedChat:
        chat = current
        for act in acts:
            chat = merge_activity(chat, act)
        assert chat is not None
        shared = row.last_shared_at
        if shared is not None and (chat.last_shared_at is None or chat.last_shared_at < shared):
            chat = chat._replace(last_shared_at=shared)
        count = row.share_count if row.share_count is not None else (1 if shared else 0)
        chat = chat._replace(share_count=max(chat.share_count, count))
        if current is None and row.is_group is not None:
            chat = chat._replace(is_group=row.is_group)
        if row.status is not None and (current is None or chat.status == ChatStatus.active):
            chat = chat._replace(status=row.status)
        return chat

    return merge


async def _write_pass(
    merge_batch: MergeBatch,
    path: Path,
    fmt: Format,
    scan: _Scan,
    now: datetime,
    *,
    write: bool,
    batch: int,
    progress: Progress | None,
) -> tuple[UpsertCounts, dict[int, int]]:
    """The second pass: the good rows again, merged ``batch`` at a time by ``merge_batch``."""
    counts = UpsertCounts()
    repeated = {key for key, _ in scan.repeats.values()}
    first_line: dict[int, int] = {}
    merges: dict[str, Merge] = {}
    done = 0
    for line_no, row in _validated(path, fmt, now):
        if not isinstance(row, ImportRow) or line_no in scan.repeats:
            continue
        if repeated:
            key = _digest(row.chat_id)
            if key in repeated:
                first_line.setdefault(key, line_no)
        merges[row.chat_id] = row_merge(row)
        if len(merges) >= batch:
            counts += await merge_batch(merges)
            done += len(merges)
            merges = {}
            if progress is not None:
                progress("written" if write else "counted", done)
    if merges:
        counts += await merge_batch(merges)
    return counts, first_line


async def import_file(
    ledger: Ledger,
    path: Path,
    policy: Policy,
    now: datetime,
    *,
    fmt: Format | None = None,
    dry_run: bool = False,
    batch: int = IMPORT_BATCH,
    progress: Progress | None = None,
) -> ImportReport:
    """Two streaming passes: validate every row, then merge the good ones in batches.

    Memory holds one batch and 8 bytes a row, whatever the file's size. The write pass runs
    in one transaction: an import that fails part-way (the ledger goes away, the process is
    stopped) writes nothing, and running it again is safe.
    """
    chosen = detect_format(path, fmt)
    scan = await asyncio.to_thread(scan_rows, path, chosen, now, progress)
    report = ImportReport(str(path), chosen, dry_run)
    report.rows = scan.rows
    report.accepted = scan.accepted
    write = not dry_run
    async with chat_merger(ledger, policy, now, write=write) as merge_batch:
        counts, first_line = await _write_pass(
            merge_batch, path, chosen, scan, now, write=write, batch=batch, progress=progress
        )
    report.counts = counts
    report.rejected = _problems(scan, first_line)
    return report
