"""The deploy artifacts agree with each other and with the code: compose, Dockerfile, systemd.

No container engine runs these tests; they read the files as the tools would and check what
each promises: the schedule compose mounts passes ``config check`` with the environment
compose gives it, ports and paths line up, the image runs as a user with a health check,
the unit restarts on failure and is hardened.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from scheduler.config import Schedule, load_schedule, normalize_database_url
from scheduler.healthcheck import livez_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[?-][^}]*)?\}")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _substitute(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env[m.group(1)], value)


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _docker_env(text: str) -> dict[str, str]:
    """ENV lines of the final stage (``KEY=value`` pairs, with line continuations)."""
    final = text.split("\nFROM ")[-1].replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


def test_compose_runs_postgres_and_the_daemon_on_a_valid_schedule(tmp_path: Path) -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "share-scheduler"}
    app = services["share-scheduler"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )

    # The schedule compose mounts is the one the image reads.
    (mount,) = app["configs"]
    schedule_file = DEPLOY / compose["configs"][mount["source"]]["file"]
    assert schedule_file.is_file()
    assert mount["target"] == _docker_env(_dockerfile())["SHARE_SCHEDULER_CONFIG"]

    # With the values compose substitutes, `config check` passes and the URL is PostgreSQL
    # on the compose service, with the service's user and database.
    dotenv = {
        "LINQ_API_KEY": "k-123456",
        "LINQ_WEBHOOK_SECRET": "w-123456",
        "POSTGRES_PASSWORD": "p",
    }
    env = {k: _substitute(str(v), dotenv) for k, v in app["environment"].items()}
    url = normalize_database_url(env["SHARE_SCHEDULER_DATABASE_URL"])
    pg = services["postgres"]["environment"]
    # The password never goes into the URL unescaped: it comes apart, the daemon escapes it.
    assert url == f"postgresql+psycopg://{pg['POSTGRES_USER']}@postgres:5432/{pg['POSTGRES_DB']}"
    assert env["SHARE_SCHEDULER_DATABASE_PASSWORD"] == dotenv["POSTGRES_PASSWORD"]
    assert "POSTGRES_PASSWORD" not in app["environment"]["SHARE_SCHEDULER_DATABASE_URL"]
    run = subprocess.run(
        [sys.executable, "-m", "scheduler", "config", "check", str(schedule_file)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
    )
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
    schedule, secrets = load_schedule(schedule_file, env=env, database_url=url)
    assert secrets.api_key is not None and secrets.api_key.source == "LINQ_API_KEY"
    assert [s.source for s in secrets.webhook_secrets] == ["LINQ_WEBHOOK_SECRET"]
    assert env["SHARE_SCHEDULER_MIGRATE"] == "1", "the schema is upgraded before the daemon runs"

    # Published port = listen port = the image's EXPOSE and health check port.
    _host, container = str(app["ports"][0]).split(":")
    assert int(container) == schedule.webhooks.port
    assert schedule.webhooks.host == "0.0.0.0", "reachable from outside the container"
    assert f"EXPOSE {container}" in _dockerfile()
    # The image's health check asks the port this schedule listens on.
    assert livez_url(schedule) == f"http://127.0.0.1:{container}/livez"


def test_compose_fails_fast_without_its_secrets() -> None:
    env = _compose()["services"]["share-scheduler"]["environment"]
    for name in ("LINQ_API_KEY", "LINQ_WEBHOOK_SECRET"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), name
    assert re.fullmatch(
        r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", env["SHARE_SCHEDULER_DATABASE_PASSWORD"]
    )


def _compose_duration(value: str) -> timedelta:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, f"{value!r}: use a plain 30s / 1m duration"
    return timedelta(seconds=int(match.group(1)) * (60 if match.group(2) == "m" else 1))


def test_compose_lets_the_daemon_finish_its_shutdown_grace() -> None:
    app = _compose()["services"]["share-scheduler"]
    schedule, _ = load_schedule(
        DEPLOY / "compose.schedule.yaml", env={"LINQ_API_KEY": "k", "LINQ_WEBHOOK_SECRET": "w"}
    )
    grace = schedule.share_pass.shutdown_grace
    # The share pass's grace, then up to 5 s for the HTTP server: before compose's SIGKILL.
    assert _compose_duration(app["stop_grace_period"]) > grace + timedelta(seconds=5)


def test_dockerfile_is_slim_non_root_health_checked_and_can_migrate() -> None:
    text = _dockerfile()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(b.startswith("python:3.11-slim") for b in bases)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*scheduler\.healthcheck", text, re.M)
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M)
    assert entry is not None
    script = DEPLOY / Path(entry.group(1)).name
    assert f"COPY deploy/{script.name} {entry.group(1)}" in text
    body = script.read_text()
    assert 'SHARE_SCHEDULER_MIGRATE:-0}" = "1"' in body and "db upgrade" in body
    assert 'exec share-scheduler "$@"' in body, "signals reach the daemon (PID 1)"
    env = _docker_env(text)
    # The migrations the wheel installs as data files under the image's prefix.
    assert env["SHARE_SCHEDULER_MIGRATIONS"] == "/usr/local/share/share-scheduler/migrations"
    assert "COPY migrations ./migrations" in text


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / "share-scheduler.service")
    return parser


def test_systemd_unit_restarts_and_is_hardened() -> None:
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3"}
    assert service["NoNewPrivileges"] == "true"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "share-scheduler"
    assert service["EnvironmentFile"].startswith("/etc/share-scheduler/")
    assert "db upgrade" in service["ExecStartPre"]
    assert service["ExecReload"].endswith("-HUP $MAINPID")
    assert service["User"] != "root"
    # The example schedule keeps its SQLite ledger where the unit may write.
    example, _ = load_schedule(
        DEPLOY / "schedule.example.yaml", env={"LINQ_API_KEY": "k", "LINQ_WEBHOOK_SECRET": "w"}
    )
    assert f"/var/lib/{service['StateDirectory']}/" in example.database.url


@pytest.mark.parametrize("name", ["schedule.example.yaml", "compose.schedule.yaml"])
def test_shipped_schedules_pass_config_check_without_secrets_at_build_time(name: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scheduler",
            "config",
            "check",
            "--skip-secrets",
            str(DEPLOY / name),
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "scheduler", "config", "check", str(DEPLOY / name)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert missing.returncode == 2
    assert "LINQ_API_KEY is not set" in missing.stderr


def test_an_installed_wheel_finds_its_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler.ledger import schema

    monkeypatch.delenv(schema.MIGRATIONS_ENV, raising=False)
    assert schema.migrations_dir() == ROOT / "migrations", "a source checkout uses its own"
    # Installed: the package sits in site-packages, the data files under the prefix, as
    # pyproject's [tool.setuptools.data-files] puts them.
    site = tmp_path / "lib" / "site-packages" / "scheduler" / "ledger"
    site.mkdir(parents=True)
    installed = tmp_path / "share" / "share-scheduler" / "migrations"
    installed.mkdir(parents=True)
    monkeypatch.setattr(schema, "__file__", str(site / "schema.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert schema.migrations_dir() == installed
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"share/share-scheduler/migrations/versions" = ["migrations/versions/*.py"]' in pyproject


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        yield prefix + name
        for arg in typing.get_args(info.annotation) or (info.annotation,):
            for inner in typing.get_args(arg) or (arg,):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from _keys(inner, f"{prefix}{name}.")


def test_the_example_schedule_shows_every_key() -> None:
    # Operators learn the schedule from the example: a key missing there is a key unknown.
    text = (DEPLOY / "schedule.example.yaml").read_text()
    missing = [
        key
        for key in _keys(Schedule)
        if not re.search(rf"(^|[\s#{{,]){re.escape(key.rsplit('.', 1)[-1])}:", text, re.M)
    ]
    assert missing == []
