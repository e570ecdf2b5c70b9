"""``ledger import``: row-by-row validation, one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler import clock
from scheduler.core.status import ChatStatus
from scheduler.ingest.importer import Format, ImportFileError, import_file
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from tests.factories import add_line, policy

LINE = "+14155550100"
OTHER_LINE = "+14155550111"
NOW = clock.now()
DAY = timedelta(days=1)
COMMAND = (sys.executable, "-m", "scheduler")

GOOD_AND_BAD_CSV = "\n".join(
    [
        "chat_id,line,recipients,service,is_group,first_outbound_at,last_outbound_at,"
        "last_inbound_at,last_shared_at,share_count,status",
        "c-1,+14155550100,+12125550101,iMessage,,2026-01-05T10:00:00Z,2026-01-06T10:00:00Z,,,,",
        "c-2,+14155550100,+12125550102,imessage,false,2026-01-05 10:00:00,,"
        "2026-01-07T08:00:00+01:00,2026-01-06T12:00:00Z,4,",
        "c-3,+1415555,+12125550103,iMessage,,2026-01-05T10:00:00Z,,,,,",
        'c-4,+14155550111,"+12125550104;+12125550105",SMS,,2026-01-05T10:00:00Z,,,,,opted_out',
        "c-5,+14155550100,+12125550106,Telegram,,2026-01-05T10:00:00Z,,,,,",
        "c-6,+14155550100,+12125550107,iMessage,,yesterday,,,,,",
        "c-7,+14155550100,+12125550108,iMessage,,2026-01-05T10:00:00Z,2026-01-04T10:00:00Z,,,,",
        "c-1,+14155550100,+12125550109,iMessage,,2026-01-05T10:00:00Z,,,,,",
        ",+14155550100,+12125550110,iMessage,,2026-01-05T10:00:00Z,,,,,",
        "c-8,+14155550100,+12125550111,iMessage,,2999-01-05T10:00:00Z,,,,,",
        "c-9,+14155550100,+12125550112,iMessage,,2026-01-05T10:00:00Z,,,,-2,",
        "c-10,+14155550100,+12125550113",
        "",
        'c-11,+14155550100,"multi',
        'line",iMessage,,2026-01-05T10:00:00Z,,,,,',
        "c-12,+14155550100,someone@example.com,RCS,no,,,,,,paused",
        "",
    ]
)
# Line numbers as a text editor shows them: c-11's record spans lines 15 and 16.
EXPECTED_PROBLEMS = {
    4: "line: '+1415555' is not an E.164 phone number",
    6: "service: 'Telegram' is not one of iMessage, SMS, RCS",
    7: "first_outbound_at: 'yesterday' is not an ISO-8601 time",
    8: "last_outbound_at is before first_outbound_at",
    9: "chat_id 'c-1' was already given on line 2",
    10: "chat_id: missing",
    11: "first_outbound_at: '2999-01-05T10:00:00Z' is in the future",
    12: "share_count: '-2' is not a whole number",
    13: "expected 11 fields, found 3",
    15: "recipients: 'multi' is not an E.164 number or an email",
}


def _config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        json.dumps(
            {
                "database": {"url": database_url},
                "sharing": {"stop_after_inactive_days": None},
                "logging": {"format": "json"},
            }
        )
    )
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "ledger", "import", *args], capture_output=True, text=True, timeout=120
    )


async def _rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    async with ledger.read() as conn:
        return {
            r.chat_id: dict(r._mapping)
            for r in await conn.execute(sa.select(chats).order_by(chats.c.chat_id))
        }


async def _dump(ledger: Ledger) -> tuple[Any, ...]:
    async with ledger.read() as conn:
        return (
            [tuple(r) for r in await conn.execute(sa.select(chats).order_by(chats.c.chat_id))],
            [tuple(r) for r in await conn.execute(sa.select(lines).order_by(lines.c.number))],
        )


async def test_good_rows_go_in_bad_rows_are_listed_and_the_exit_code_says_so(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    await add_line(ledger, LINE, NOW)
    data = tmp_path / "chats.csv"
    data.write_text(GOOD_AND_BAD_CSV)
    result = _run(str(data), "--config", str(_config(tmp_path, ledger_url)))
    assert result.returncode == 1, result.stderr
    reported = [line for line in result.stderr.splitlines() if line.startswith(str(data))]
    assert len(reported) == len(EXPECTED_PROBLEMS)
    for (line_no, message), text in zip(EXPECTED_PROBLEMS.items(), reported, strict=True):
        assert text.startswith(f"{data}: line {line_no}: {message}"), text
    assert "14 rows, imported 4 (4 new, 0 updated, 0 unchanged), rejected 10" in result.stdout

    rows = await _rows(ledger)
    assert sorted(rows) == ["c-1", "c-12", "c-2", "c-4"]
    one, two, four = rows["c-1"], rows["c-2"], rows["c-4"]
    assert one["first_outbound_at"] == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert one["last_outbound_at"] == datetime(2026, 1, 6, 10, tzinfo=UTC)
    assert one["next_share_at"] is not None  # the line's card is active: scheduled
    assert two["service"] == "iMessage"  # normalised
    assert two["last_inbound_at"] == datetime(2026, 1, 7, 7, tzinfo=UTC)  # offsets honoured
    assert (two["last_shared_at"], two["share_count"]) == (datetime(2026, 1, 6, 12, tzinfo=UTC), 4)
    assert four["recipients"] == "+12125550104,+12125550105"
    assert (four["is_group"], four["service"], four["status"]) == (True, "SMS", "opted_out")
    assert four["next_share_at"] is None
    twelve = rows["c-12"]
    assert (twelve["recipients"], twelve["service"], twelve["status"]) == (
        "someone@example.com",
        "RCS",
        ChatStatus.paused,
    )
    async with ledger.read() as conn:
        numbers = [n for (n,) in await conn.execute(sa.select(lines.c.number).order_by("number"))]
    assert numbers == [LINE, OTHER_LINE]


async def test_jsonl_rows_are_checked_one_by_one(ledger: Ledger, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    first = "2026-01-05T10:00:00Z"
    pair = ["+12125550102", "+12125550103"]
    records: list[Any] = [
        {"chat_id": "j-1", "line": LINE, "recipient": "+12125550101", "first_outbound_at": first},
        {"chat_id": "j-2", "line": LINE, "recipients": pair, "is_group": True, "share_count": 2},
        "not an object",
        {"chat_id": "j-3", "line": LINE, "colour": "blue"},
        {"chat_id": "j-4", "line": LINE, "share_count": True},
        {"chat_id": "j-5", "line": LINE, "recipient": "+1", "recipients": ["+12125550104"]},
        {"chat_id": "j-6", "line": LINE, "last_shared_at": "2026-01-05T10:00:00Z"},
        {"chat_id": 7, "line": LINE},
    ]  # fmt: skip
    lines_text = [json.dumps(r) for r in records]
    lines_text.insert(3, "{not json")
    lines_text.insert(4, "")
    data.write_text("\n".join(lines_text) + "\n")
    report = await import_file(ledger, data, policy(), NOW)
    assert report.format == Format.jsonl
    assert [(p.line_no, p.message) for p in report.rejected] == [
        (3, "expected a JSON object"),
        (4, "not valid JSON"),
        (6, "unknown field 'colour'"),
        (7, "share_count: expected a whole number"),
        (8, "give recipient or recipients, not both"),
        (9, "last_shared_at needs first_outbound_at (a share follows an outbound)"),
        (10, "chat_id: expected text, got int"),
    ]
    rows = await _rows(ledger)
    assert sorted(rows) == ["j-1", "j-2"]
    assert rows["j-2"]["recipients"] == "+12125550102,+12125550103"
    assert rows["j-2"]["share_count"] == 2


async def test_a_dry_run_writes_nothing(ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    await add_line(ledger, LINE, NOW)
    data = tmp_path / "chats.csv"
    data.write_text(GOOD_AND_BAD_CSV)
    before = await _dump(ledger)
    result = _run(str(data), "--dry-run", "--json", "--config", str(_config(tmp_path, ledger_url)))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert (report["accepted"], report["created"]) == (4, 4)
    assert [r["line"] for r in report["rejected"]] == list(EXPECTED_PROBLEMS)
    assert await _dump(ledger) == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "chat_id,line,colour\nc,+14155550100,blue\n", "unknown column 'colour'"),
        ("a.csv", "line,service\n+14155550100,SMS\n", "the header has no 'chat_id' column"),
        ("a.csv", "chat_id,line,line\nc,+14155550100,+1\n", "column 'line' appears twice"),
        ("a.txt", "chat_id,line\nc,+14155550100\n", "cannot tell the format"),
        ("a.csv", b"chat_id,line\nc\xff,+14155550100\n", "not UTF-8"),
        ("missing.csv", None, "cannot read"),
    ],
)
async def test_an_unusable_file_is_refused_whole_with_exit_2(
    ledger: Ledger,
    ledger_url: str,
    tmp_path: Path,
    name: str,
    content: str | bytes | None,
    message: str,
) -> None:
    data = tmp_path / name
    if isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    before = await _dump(ledger)
    result = _run(str(data), "--config", str(_config(tmp_path, ledger_url)))
    assert result.returncode == 2
    assert message in result.stderr
    assert await _dump(ledger) == before


async def test_an_import_never_undoes_fresher_knowledge(ledger: Ledger, tmp_path: Path) -> None:
    await add_line(ledger, LINE, NOW)
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(chats).values(
                chat_id="k-1",
                line=LINE,
                recipients="+12125550101",
                service="iMessage",
                first_outbound_at=NOW - 3 * DAY,
                last_outbound_at=NOW - DAY,
                last_shared_at=NOW - DAY,
                share_count=5,
                status=ChatStatus.opted_out,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    data = tmp_path / "old.csv"
    data.write_text(
        "chat_id,line,service,first_outbound_at,last_outbound_at,last_shared_at,share_count,status\n"
        f"k-1,{LINE},SMS,{(NOW - 10 * DAY).isoformat()},{(NOW - 9 * DAY).isoformat()},"
        f"{(NOW - 9 * DAY).isoformat()},1,active\n"
    )
    report = await import_file(ledger, data, policy(), NOW)
    assert report.ok and report.counts.updated == 1
    row = (await _rows(ledger))["k-1"]
    assert row["first_outbound_at"] == NOW - 10 * DAY  # earlier first outbound learnt
    assert row["last_outbound_at"] == NOW - DAY
    assert (row["last_shared_at"], row["share_count"]) == (NOW - DAY, 5)
    assert row["service"] == "iMessage"  # known service kept
    assert row["status"] == ChatStatus.opted_out  # never re-activated by an import
    again = await import_file(ledger, data, policy(), NOW + DAY)
    assert again.counts.unchanged == 1 and again.counts.updated == 0


async def test_a_failure_while_writing_leaves_nothing_half_written(
    ledger: Ledger, tmp_path: Path
) -> None:
    # The database itself refuses one row in the middle of the batch.
    async with ledger.write() as conn:
        if ledger.is_sqlite:
            await conn.execute(
                sa.text(
                    "CREATE TRIGGER poison BEFORE INSERT ON chats WHEN NEW.chat_id = 'p-5' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        else:
            await conn.execute(
                sa.text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.chat_id = 'p-5' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                sa.text(
                    "CREATE TRIGGER poison BEFORE INSERT ON chats "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )
    data = tmp_path / "chats.csv"
    data.write_text(
        "chat_id,line,first_outbound_at\n"
        + "".join(f"p-{i},{LINE},2026-01-05T10:00:00Z\n" for i in range(10))
    )
    before = await _dump(ledger)
    with pytest.raises(sa.exc.DBAPIError, match="refused by the test"):
        await import_file(ledger, data, policy(), NOW)
    assert await _dump(ledger) == before
    assert before == ([], [])


def test_the_format_must_be_known(tmp_path: Path) -> None:
    from scheduler.ingest.importer import detect_format

    assert detect_format(Path("x.NDJSON"), None) == Format.jsonl
    assert detect_format(Path("x.data"), Format.csv) == Format.csv
    with pytest.raises(ImportFileError, match="--format csv or --format jsonl"):
        detect_format(tmp_path / "x.data", None)
