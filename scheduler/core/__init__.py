"""The pure core: the sharing rule, what a share's answer means, the card plan and write
budget, the merge of activity, and the records and states they work on.

Everything here takes ``now`` and records as arguments and returns decisions: no I/O, no clock,
no database, no HTTP. The import contracts in ``pyproject.toml`` keep it that way.
"""
