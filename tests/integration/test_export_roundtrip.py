"""``ledger export`` output re-imports into a fresh ledger as the same chats, on both databases."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scheduler import clock
from scheduler.ingest.importer import EXPORT_ONLY, import_file
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.ledger.export import EXPORT_COLUMNS, export_chats
from scheduler.ledger.facts import chats
from tests.conftest import PgServer
from tests.factories import policy

NOW = clock.now().replace(microsecond=0)
D = timedelta(days=1)
# The chat's facts and sharing state: what an export carries and an import must restore
# (next_share_at recomputed by the same rule from the same facts).
COMPARED = (*(c for c in EXPORT_COLUMNS if c not in EXPORT_ONLY), "next_share_at")


def _iso(days: float) -> str:
    return (NOW - days * D).isoformat()


SEED = [
    {"chat_id": "c-plain", "line": "+14155550100", "recipient": "+12125550101",
     "service": "iMessage", "first_outbound_at": _iso(10), "last_outbound_at": _iso(2)},
    {"chat_id": "c-group", "line": "+14155550100",
     "recipients": ["+12125550102", "someone@example.com"], "service": "iMessage",
     "first_outbound_at": _iso(9), "last_inbound_at": _iso(1)},
    {"chat_id": "c-shared", "line": "+14155550111", "recipient": "+12125550103",
     "service": "SMS", "first_outbound_at": _iso(20), "last_outbound_at": _iso(3),
     "last_shared_at": _iso(0.5), "share_count": 7},
    {"chat_id": "c-opted-out", "line": "+14155550111", "recipient": "+12125550104",
     "service": "RCS", "first_outbound_at": _iso(8), "status": "opted_out"},
    {"chat_id": "c-paused", "line": "+14155550100", "recipient": "+12125550105",
     "first_outbound_at": _iso(4), "status": "paused", "is_group": False},
    {"chat_id": "c-no-outbound", "line": "+14155550100", "recipient": "+12125550106",
     "last_inbound_at": _iso(1)},
]  # fmt: skip


@pytest.fixture
async def fresh(
    request: pytest.FixtureRequest, ledger_url: str, tmp_path: Path
) -> AsyncIterator[Ledger]:
    """A second migrated ledger on the same kind of database."""
    if ledger_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "fresh.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.url(server.create(template=server.template))
    led = Ledger(create_engine(url, pool_size=2))
    yield led
    await led.dispose()


async def _chats(ledger: Ledger) -> dict[str, dict[str, Any]]:
    async with ledger.read() as conn:
        rows = await conn.execute(sa.select(*(chats.c[c] for c in COMPARED)))
        return {r.chat_id: dict(r._mapping) for r in rows}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_an_export_reimports_to_the_same_chats(
    ledger: Ledger, fresh: Ledger, tmp_path: Path, fmt: str
) -> None:
    pol = policy()
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(row) + "\n" for row in SEED))
    seeded = await import_file(ledger, seed, pol, NOW)
    assert seeded.ok, seeded.rejected
    out = io.StringIO()
    assert await export_chats(ledger, out, fmt=fmt) == len(SEED)  # type: ignore[arg-type]
    exported = tmp_path / f"chats.{fmt}"
    exported.write_text(out.getvalue())

    report = await import_file(fresh, exported, pol, NOW)
    assert report.ok, [str(p) for p in report.rejected]
    before, after = await _chats(ledger), await _chats(fresh)
    assert sorted(after) == sorted(before)
    for chat_id, row in before.items():
        for column in COMPARED:
            assert after[chat_id][column] == row[column], (chat_id, column)
