"""``share-scheduler run``: the daemon."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from scheduler.cli.common import ConfigOption, DatabaseUrlOption
from scheduler.errors import ConfigError, ConfigProblem


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the same asyncio API with a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(config: ConfigOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Run the daemon: share passes, card checks, webhooks, /healthz, /readyz, /metrics."""
    from scheduler.daemon import run_daemon

    if config is None:
        raise ConfigError("(no schedule file)", [ConfigProblem("", "give --config FILE")])
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(run_daemon(config, database_url))
    sys.exit(code)
