"""Starting the simulator and the daemon as real processes, and stopping them with signals.

Used by ``share-scheduler demo`` and by the end-to-end tests.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

_LISTENING = re.compile(r"sim: listening on (http://\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s")


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    base_url: str
    token: str
    log_path: Path

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/partner"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        env: Mapping[str, str],
        token: str = "sim-token",  # noqa: S107 - the simulator's default
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        activation_delay: float = 2.0,
        latency_ms: float = 0.0,
        extra: list[str] | None = None,
    ) -> SimProcess:
        args = [
            sys.executable,
            "-m",
            "scheduler",
            "sim",
            "serve",
            "--port",
            "0",
            "--token",
            token,
            "--activation-delay",
            str(activation_delay),
            "--latency-ms",
            str(latency_ms),
        ]
        if webhook_url:
            args += ["--webhook-url", webhook_url]
        if extra:
            args += extra
        child_env = {**env}
        if webhook_secret:
            child_env["SIM_WEBHOOK_SECRET"] = webhook_secret
        log_path = workdir / "sim.log"
        log = log_path.open("w")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=child_env)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        base_url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                base_url = match.group(1).rstrip("/")
                break
        if base_url is None:
            proc.kill()
            raise RuntimeError(f"the simulator did not start; see {log_path}")
        _wait_http(f"{base_url}/_sim/health", proc, 10, "the simulator")
        return cls(proc, base_url, token, log_path)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = httpx.request(method, f"{self.base_url}/_sim/{path}", timeout=30, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class DaemonProcess:
    config_path: Path
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        _wait_http(f"{self.base_url}/healthz", self.proc, timeout, "the daemon")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_schedule(path: Path, schedule: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(schedule, sort_keys=False))
    return path


def run_command(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``share-scheduler ARGS`` in a child process, its output captured; raises if it fails."""
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        check=True,
        env=dict(env),
        capture_output=True,
        text=True,
    )


def upgrade_db(config_path: Path, env: Mapping[str, str]) -> None:
    run_command(["db", "upgrade", "--config", str(config_path)], env)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra)
    return env
