"""The real daemon on PostgreSQL with a password in its URL: no log line or page shows it."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from scheduler.demo.processes import free_port
from tests.e2e.conftest import DAY1_0800_NY
from tests.e2e.harness import Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PASSWORD = "e2e-Db-Secret-41f0"
L1 = "+14155550100"


def test_daemon_logs_and_pages_never_show_the_database_password(
    empty_pg_url: str, tmp_path: Path
) -> None:
    url = make_url(empty_pg_url).set(password=PASSWORD).render_as_string(hide_password=False)
    stack = Stack(tmp_path, DAY1_0800_NY, database_url=url)
    try:
        port = free_port()
        stack.start_sim(port)
        daemon = stack.add_daemon({"lines": [{"number": L1}]}, port=port)
        daemon.start()
        pages = [
            httpx.get(f"{daemon.base_url}{path}", timeout=10).text
            for path in ("/readyz", "/metrics", "/livez")
        ]
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config.reloaded" in daemon.logs(), what="config.reloaded")
        assert daemon.stop() == 0
    finally:
        stack.stop()
    logs = daemon.logs()
    assert "daemon.started" in logs and "daemon.stopped" in logs
    # The ledger is named in the start event, with its password hidden.
    assert "postgresql+psycopg://postgres:***@127.0.0.1" in logs
    for shown in (logs, *pages):
        assert PASSWORD not in shown
