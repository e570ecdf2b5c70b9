"""The container's health check finds the configured port; the log stream is chosen by env."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from scheduler.config import parse_schedule
from scheduler.errors import ConfigError
from scheduler.healthcheck import check, livez_url
from scheduler.logs import LOG_STREAM_ENV, default_stream


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:9090", "http://127.0.0.1:9090/livez"),
        ("127.0.0.2:8080", "http://127.0.0.2:8080/livez"),
        ("[::]:8081", "http://[::1]:8081/livez"),
    ],
)
def test_livez_url_follows_the_configured_listen_address(listen: str, url: str) -> None:
    schedule = parse_schedule({"webhooks": {"listen": listen}}, "test")
    assert livez_url(schedule) == url


def test_check_names_what_is_missing_or_wrong(tmp_path: Path) -> None:
    assert check({}) == (2, "SHARE_SCHEDULER_CONFIG is not set")
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhooks: {listen: nowhere}\n")
    code, message = check({"SHARE_SCHEDULER_CONFIG": str(bad)})
    assert code == 2 and "webhooks.listen" in message
    # Nothing listens on this port (bound, never listening): unhealthy, with the URL named.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        good = tmp_path / "good.yaml"
        good.write_text(f"webhooks: {{listen: '0.0.0.0:{port}'}}\n")
        code, message = check({"SHARE_SCHEDULER_CONFIG": str(good)}, timeout=2)
    assert code == 1 and f"http://127.0.0.1:{port}/livez" in message


def test_log_stream_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_STREAM_ENV, raising=False)
    assert default_stream() is sys.stderr
    monkeypatch.setenv(LOG_STREAM_ENV, "stdout")
    assert default_stream() is sys.stdout
    monkeypatch.setenv(LOG_STREAM_ENV, "syslog")
    with pytest.raises(ConfigError, match=r"SHARE_SCHEDULER_LOG_STREAM: must be stdout or stderr"):
        default_stream()
