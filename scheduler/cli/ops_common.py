"""Loading for the operator commands: the schedule and its sharing rule.

The same loading as the ingestion commands', under the names the operator commands use.
"""

from __future__ import annotations

from pathlib import Path

from scheduler.cli.ingest_common import load_schedule_and_secrets
from scheduler.config import Schedule, Secrets


def load_for_rule(
    config: Path | None, database_url: str | None, *, what: str
) -> tuple[Schedule, Secrets]:
    """The schedule, required: ``what`` uses the sharing rule, whose knobs live in it."""
    return load_schedule_and_secrets(config, database_url, what=what, quiet=False)
