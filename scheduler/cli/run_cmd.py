"""``share-scheduler run``: the daemon."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from scheduler.cli.options import ConfigOption, DatabaseUrlOption
from scheduler.errors import ConfigError, ConfigProblem


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the same asyncio API with a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# Installed for the other commands' tables, and loaded by two libraries the daemon uses only
# for what it never does: structlog imports rich to render tracebacks in colour, httpx imports
# its own command-line client (rich and pygments). Together about 4 MB resident and 80 modules.
_UNUSED_EXTRAS = ("rich", "pygments")


def _import_without_unused_extras() -> None:
    """Import structlog and httpx as if rich and pygments were not installed.

    Both check once, on import, and do without them. They are hidden for the length of these
    imports only: whoever imports rich later gets it as usual.
    """
    if any(name in sys.modules for name in ("structlog", "httpx", *_UNUSED_EXTRAS)):
        return
    for name in _UNUSED_EXTRAS:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import httpx  # noqa: F401
        import structlog  # noqa: F401
    finally:
        for name in _UNUSED_EXTRAS:
            del sys.modules[name]


def run(config: ConfigOption = None, database_url: DatabaseUrlOption = None) -> None:
    """Run the daemon: share passes, card checks, webhooks, /healthz, /readyz, /metrics."""
    _import_without_unused_extras()
    from scheduler.daemon import run_daemon

    if config is None:
        raise ConfigError("(no schedule file)", [ConfigProblem("", "give --config FILE")])
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(run_daemon(config, database_url))
    sys.exit(code)
