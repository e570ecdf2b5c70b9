"""Small builders for tests: ledger rows (lines, chats) and Linq webhook events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from scheduler.core.rule import Policy
from scheduler.core.status import CardState, ChatStatus
from scheduler.ledger.engine import Ledger
from scheduler.ledger.facts import chats, lines
from scheduler.ledger.recompute import recompute_chats
from scheduler.testing import webhooks

# The time, line and customer of the events :func:`message_event` builds unless told.
EVENT_TIME = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
EVENT_LINE = webhooks.LINE
EVENT_CUSTOMER = webhooks.CUSTOMER


def policy(**overrides: object) -> Policy:
    values: dict[str, object] = {
        "timezone": "UTC",
        "window_start": time(9, 0),
        "window_end": time(20, 0),
        "min_interval": timedelta(hours=12),
        "stop_after_inactive_days": None,
    }
    values.update(overrides)
    return Policy(**values)  # type: ignore[arg-type]


async def add_line(
    ledger: Ledger, number: str, now: datetime, state: str = CardState.active
) -> None:
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(lines).values(number=number, card_state=state, created_at=now, updated_at=now)
        )


async def add_chats(
    ledger: Ledger,
    line: str,
    count: int,
    *,
    now: datetime,
    first_outbound_at: datetime,
    service: str = "iMessage",
    prefix: str = "chat",
    status: str = ChatStatus.active,
    is_group: bool = False,
    pol: Policy | None = None,
) -> list[str]:
    """``count`` chats named ``prefix-000000``...; ``pol``: their next shares computed by it."""
    ids = [f"{prefix}-{i:06d}" for i in range(count)]
    return await add_chats_named(
        ledger,
        line,
        ids,
        now=now,
        first_outbound_at=first_outbound_at,
        service=service,
        status=status,
        is_group=is_group,
        pol=pol,
    )


async def add_chats_named(
    ledger: Ledger,
    line: str,
    ids: Sequence[str],
    *,
    now: datetime,
    first_outbound_at: datetime,
    service: str = "iMessage",
    status: str = ChatStatus.active,
    is_group: bool = False,
    pol: Policy | None = None,
) -> list[str]:
    """Chats of these ids (the simulator's, say), created ``now``, each with one recipient."""
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(chats),
            [
                {
                    "chat_id": chat_id,
                    "line": line,
                    "recipients": f"+1212555{i % 10000:04d}",
                    "is_group": is_group,
                    "service": service,
                    "first_outbound_at": first_outbound_at,
                    "last_outbound_at": first_outbound_at,
                    "status": status,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, chat_id in enumerate(ids)
            ],
        )
    if pol is not None:
        await recompute_chats(ledger, pol, now=now)
    return list(ids)


async def add_chat(
    ledger: Ledger,
    chat_id: str,
    line: str,
    recipients: str,
    *,
    now: datetime,
    is_group: bool = False,
    status: str = ChatStatus.active,
    next_share_at: datetime | None = None,
) -> None:
    """One iMessage chat whose first outbound message was an hour before ``now``."""
    async with ledger.write() as conn:
        await conn.execute(
            sa.insert(chats).values(
                chat_id=chat_id,
                line=line,
                recipients=recipients,
                is_group=is_group,
                service="iMessage",
                first_outbound_at=now - timedelta(hours=1),
                last_outbound_at=now - timedelta(hours=1),
                status=status,
                next_share_at=next_share_at,
                created_at=now,
                updated_at=now,
            )
        )


async def chat_row(ledger: Ledger, chat_id: str) -> sa.Row[tuple[object, ...]]:
    async with ledger.read() as conn:
        row = (await conn.execute(sa.select(chats).where(chats.c.chat_id == chat_id))).one()
    return row


def message_event(
    event_type: str, *, sent_at: datetime = EVENT_TIME, **fields: Any
) -> dict[str, Any]:
    """A v3 ``message.*`` event (see :func:`scheduler.testing.message_event`), at a fixed time."""
    return webhooks.message_event(event_type, sent_at=sent_at, **fields)
