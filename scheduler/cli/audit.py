"""Who an operator command acts as, and the trail each intervention leaves."""

from __future__ import annotations

import os
from typing import Annotated

import structlog
import typer

from scheduler import clock
from scheduler.config import Schedule
from scheduler.ledger.engine import Ledger
from scheduler.ledger.operator_log import ActionKind, OperatorAction, record_operator_action
from scheduler.logs import configure_logging

log = structlog.get_logger("scheduler.operator")

MAX_ACTOR = 128

ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who does this, for the audit trail (default: $SUDO_USER, else $USER).",
        show_default=False,
    ),
]


def actor_name(explicit: str | None) -> str:
    """``--actor``, else the user behind sudo, else the login user."""
    name = explicit
    if name is None:
        name = next(
            (os.environ[v] for v in ("SUDO_USER", "USER", "LOGNAME") if os.environ.get(v)),
            "unknown",
        )
    name = name.strip()
    if not name or len(name) > MAX_ACTOR or not name.isprintable():
        raise typer.BadParameter(
            f"must be 1 to {MAX_ACTOR} printable characters, got {explicit!r}",
            param_hint="--actor",
        )
    return name


async def record(
    ledger: Ledger,
    schedule: Schedule,
    *,
    actor: str,
    action: ActionKind,
    target: str,
    result: str,
) -> None:
    """Write the intervention to the ledger's trail and log it (``operator.action``)."""
    entry = OperatorAction(at=clock.now(), actor=actor, action=action, target=target, result=result)
    entry_id = await record_operator_action(ledger, entry)
    # The event goes to stderr; stdout stays the command's table or JSON.
    configure_logging(schedule.logging.level, schedule.logging.format)
    log.info(
        "operator.action",
        action_id=entry_id,
        actor=actor,
        action=str(action),
        target=target,
        result=result,
    )
