"""The operator's audit trail: every intervention (pause, resume, share now, import) with who,
when and what came of it, in ``operator_actions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from scheduler.ledger.engine import Ledger
from scheduler.ledger.models import operator_actions_table as operator_actions

__all__ = [
    "ActionKind",
    "OperatorAction",
    "list_operator_actions",
    "operator_actions",
    "record_operator_action",
]


class ActionKind(StrEnum):
    chat_pause = "chat.pause"
    chat_resume = "chat.resume"
    share_now = "share.now"
    line_pause = "line.pause"
    line_resume = "line.resume"
    ledger_import = "ledger.import"


@dataclass(frozen=True, slots=True)
class OperatorAction:
    at: datetime
    actor: str
    action: ActionKind
    target: str
    result: str
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": str(self.action),
            "target": self.target,
            "result": self.result,
        }


async def record_operator_action(ledger: Ledger, action: OperatorAction) -> int:
    """Append ``action`` to the trail; return its id."""
    async with ledger.write() as conn:
        result = await conn.execute(
            sa.insert(operator_actions)
            .values(
                at=action.at,
                actor=action.actor,
                action=str(action.action),
                target=action.target,
                result=action.result,
            )
            .returning(operator_actions.c.id)
        )
        return int(result.scalar_one())


async def list_operator_actions(
    ledger: Ledger,
    *,
    target: str | None = None,
    action: ActionKind | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[OperatorAction]:
    """The latest actions first, optionally only those on ``target`` or of one kind."""
    query = sa.select(operator_actions).order_by(
        operator_actions.c.at.desc(), operator_actions.c.id.desc()
    )
    if target is not None:
        query = query.where(operator_actions.c.target == target)
    if action is not None:
        query = query.where(operator_actions.c.action == str(action))
    if since is not None:
        query = query.where(operator_actions.c.at >= since)
    async with ledger.read() as conn:
        rows = await conn.execute(query.limit(limit))
        return [
            OperatorAction(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=ActionKind(row.action),
                target=row.target,
                result=row.result,
            )
            for row in rows
        ]
