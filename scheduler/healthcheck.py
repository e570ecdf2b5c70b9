"""``python -m scheduler.healthcheck``: the container's HEALTHCHECK.

Asks the running daemon's ``/livez`` on the port the schedule file configures
(``webhooks.listen``), so the image's health check follows the schedule rather than a port
written into the Dockerfile. Exit 0: alive; 1: no answer or not 200; 2: no usable schedule.
The standard library only: it runs every 30 seconds and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from scheduler.config import CONFIG_ENV, Schedule, load_schedule
from scheduler.errors import ConfigError

LIVEZ_PATH = "/livez"
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def livez_url(schedule: Schedule) -> str:
    """Where the daemon answers ``/livez``: a wildcard listen address is reached on loopback."""
    host = schedule.webhooks.host
    host = _ANY_ADDRESS.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{schedule.webhooks.port}{LIVEZ_PATH}"


def check(env: Mapping[str, str], timeout: float = 4.0) -> tuple[int, str]:
    path = env.get(CONFIG_ENV)
    if not path:
        return 2, f"{CONFIG_ENV} is not set"
    try:
        schedule, _ = load_schedule(path, env=env, require_secrets=False)
    except ConfigError as exc:
        return 2, str(exc)
    if not schedule.webhooks.enabled:
        return 2, "webhooks.enabled is false: the daemon serves no HTTP to check"
    url = livez_url(schedule)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        return 1, f"{url}: {exc}"
    return (0, f"{url}: alive") if status == 200 else (1, f"{url}: HTTP {status}")


def main() -> None:
    code, message = check(os.environ)
    print(message, file=sys.stdout if code == 0 else sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
