"""Contact cards: observed from Linq, and made to match the schedule file.

- :mod:`~scheduler.cards.observe` records what ``GET /v3/contact_card`` says;
- :mod:`~scheduler.cards.budget` is the pure bookkeeping of 3 writes per 10 minutes per number;
- :mod:`~scheduler.cards.plan` is the pure decision: create, patch, wait or nothing;
- :mod:`~scheduler.cards.sync` is the I/O shell the daemon's card job and ``cards sync`` run;
- :mod:`~scheduler.cards.status` is the read side for ``cards status``.

The ledger side (:mod:`scheduler.ledger.lines`, :mod:`scheduler.ledger.cards`) holds every
statement; the package itself imports nothing, so that the ledger and the core can use the
pure budget and plan modules without an import cycle.
"""
