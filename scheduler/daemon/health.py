"""Whether the daemon can do its work: the Linq token, the ledger, the job scheduler.

``/readyz`` and the ``token_rejected`` gauge read this. The token counts as rejected as long as
either the card job (its last read) or the share pass (its last answers) says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from scheduler.errors import LedgerUnavailable
from scheduler.ledger import schema
from scheduler.ledger.diagnostics import ping
from scheduler.ledger.engine import Ledger
from scheduler.share.share_pass import SharePass


class Health:
    def __init__(
        self, ledger: Ledger, share_pass: SharePass, scheduling: Callable[[], bool]
    ) -> None:
        self.ledger = ledger
        self.share_pass = share_pass
        # Whether the jobs run (the scheduler started, the daemon not stopping).
        self.scheduling = scheduling
        self.schema_head = schema.head_revision()
        # The card job's last answer from Linq, when it rejected the token.
        self.token_error: str | None = None

    def token_problem(self) -> str | None:
        return self.token_error or self.share_pass.auth_failure

    def token_accepted(self) -> None:
        """Linq answered a read with the token: it is good again for both jobs."""
        self.token_error = None
        self.share_pass.auth_failure = None

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            async with asyncio.timeout(3):
                await ping(self.ledger)
            checks["ledger"] = "ok"
            current = await schema.current_revision(self.ledger)
            checks["schema"] = (
                "ok"
                if current == self.schema_head
                else f"at {current or 'nothing'}, this version needs {self.schema_head}"
            )
        except (LedgerUnavailable, TimeoutError, OSError) as exc:
            checks.setdefault("ledger", f"unavailable: {str(exc)[:200] or type(exc).__name__}")
            checks.setdefault("schema", "unknown: the ledger is unavailable")
        token_error = self.token_problem()
        checks["token"] = f"rejected: {token_error}" if token_error else "ok"
        running = self.scheduling()
        checks["scheduler"] = "running" if running else "stopped"
        ledger_ok = checks["ledger"] == "ok" and checks["schema"] == "ok"
        ready = ledger_ok and token_error is None and running
        return ready, checks
