"""Contact cards: observed from Linq, and made to match the schedule file.

- :mod:`~scheduler.cards.observe` records what ``GET /v3/contact_card`` says;
- :mod:`~scheduler.core.card_budget` is the pure bookkeeping of 3 writes per 10 minutes per
  number, and :mod:`~scheduler.core.card_plan` the pure decision: create, patch, wait or nothing;
- :mod:`~scheduler.cards.sync` is the I/O shell the daemon's card job and ``cards sync`` run;
- :mod:`~scheduler.cards.status` is the read side for ``cards status``.

Their statements and transactions are the ledger's (:mod:`scheduler.ledger.lines`,
:mod:`scheduler.ledger.cards`); the records they exchange are :mod:`scheduler.core.line`'s.
"""

from scheduler.cards.observe import CardTransition, record_observed_cards, sync_configured_lines
from scheduler.cards.sync import CardSync, SyncReport

__all__ = [
    "CardSync",
    "CardTransition",
    "SyncReport",
    "record_observed_cards",
    "sync_configured_lines",
]
