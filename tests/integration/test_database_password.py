"""The database password: given apart from the URL, escaped, and never shown anywhere.

Every output path a password could leak through is run for real and grepped: the commands'
stdout and stderr (success, the database down, a malformed URL, ``-v`` tracebacks, ``--json``),
``doctor``, and the reprs of the schedule and the ledger. PostgreSQL here trusts loopback
connections, so any password connects: the checks are about where the password shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from scheduler.config import (
    DATABASE_PASSWORD_ENV,
    DATABASE_PASSWORD_FILE_ENV,
    database_password,
    load_schedule,
    redact_url,
)
from scheduler.errors import ConfigError
from scheduler.ledger.engine import Ledger, create_engine

pytestmark = pytest.mark.timeout(300)
# Every character that breaks a hand-built URL: @ / : % # ? + and a space.
PASSWORD = "Pw@/:%#?+ x-9d1f"
URL_PASSWORD = "inline-Secret-77c1"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )


def _shown(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


def _with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def test_the_password_is_escaped_into_the_url_whatever_its_characters() -> None:
    engine = create_engine("postgresql://share@db.internal:5432/ledger", password=PASSWORD)
    assert (engine.url.password, engine.url.host, engine.url.database) == (
        PASSWORD,
        "db.internal",
        "ledger",
    )
    assert engine.url.username == "share" and engine.url.port == 5432
    assert PASSWORD not in repr(engine) and PASSWORD not in str(engine.url)


def test_password_from_env_or_file_and_bad_settings_refused(tmp_path: Path) -> None:
    assert database_password({}) is None
    secret = database_password({DATABASE_PASSWORD_ENV: PASSWORD})
    assert secret is not None and secret.reveal() == PASSWORD and PASSWORD not in repr(secret)
    file = tmp_path / "pw"
    file.write_text(PASSWORD + "\n")
    from_file = database_password({DATABASE_PASSWORD_FILE_ENV: str(file)})
    assert from_file is not None and from_file.reveal() == PASSWORD
    with pytest.raises(ConfigError, match="not both") as both:
        database_password({DATABASE_PASSWORD_ENV: "x", DATABASE_PASSWORD_FILE_ENV: str(file)})
    assert PASSWORD not in str(both.value)
    with pytest.raises(ConfigError, match="cannot read"):
        database_password({DATABASE_PASSWORD_FILE_ENV: str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        database_password({DATABASE_PASSWORD_FILE_ENV: str(tmp_path / "empty")})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://share:{pw}@db:5432/ledger",
        "postgresql//share:{pw}@db/ledger",  # not a URL at all
        "postgresql://share:{pw}@db:notaport/ledger",
        "sqlite+aiosqlite://share:{pw}@/ledger.db",
        "postgresql+psycopg://share:{pw}@db/ledger?sslmode=require&user=x",
    ],
)
def test_redact_url_hides_the_password_of_any_shape(url: str) -> None:
    shown = redact_url(url.format(pw=URL_PASSWORD))
    assert URL_PASSWORD not in shown and "share" in shown


def test_no_command_output_shows_the_password(empty_pg_url: str, tmp_path: Path) -> None:
    inline = _with_password(empty_pg_url, URL_PASSWORD)
    env_pw = {DATABASE_PASSWORD_ENV: PASSWORD}
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(label: str, *args: str, code: int, env: dict[str, str] | None = None) -> None:
        result = _run(*args, env=env)
        assert result.returncode == code, (label, result.stdout, result.stderr)
        outputs.append((label, result))

    # The password inside the URL, then from the environment (the URL without one).
    run("upgrade inline", "db", "upgrade", "--database-url", inline, code=0)
    run("current inline", "db", "current", "--database-url", inline, code=0)
    run("current json", "db", "current", "--json", "--database-url", inline, code=0)
    run("downgrade", "db", "downgrade", "--database-url", empty_pg_url, code=0, env=env_pw)
    run("upgrade env", "db", "upgrade", "--database-url", empty_pg_url, code=0, env=env_pw)
    # The database down: the error names the URL's host, not its password (with -v too).
    down = _with_password(empty_pg_url.replace(":5432/", ":1/"), URL_PASSWORD)
    run("down", "db", "upgrade", "--database-url", down, code=1)
    run("down -v", "-v", "db", "current", "--database-url", down, code=1)
    run("down env", "db", "current", "--database-url", down.replace(URL_PASSWORD, "x"),
        code=1, env=env_pw)  # fmt: skip
    # A malformed URL, in the file and on the command line.
    schedule = tmp_path / "schedule.yaml"
    bad_url = f"postgresql//share:{URL_PASSWORD}@db/ledger"
    schedule.write_text(yaml.safe_dump({"database": {"url": bad_url}}))
    run("config check", "config", "check", "--skip-secrets", str(schedule), code=2)
    run("malformed", "db", "current", "--database-url", bad_url, code=2)
    # Both ways of giving the password at once: refused, neither shown.
    file = tmp_path / "pw"
    file.write_text(PASSWORD)
    both = {**env_pw, DATABASE_PASSWORD_FILE_ENV: str(file)}
    run("both", "db", "current", "--database-url", empty_pg_url, code=2, env=both)
    # A password file that cannot be read: every door says so the same way (exit 2).
    missing = {DATABASE_PASSWORD_FILE_ENV: str(tmp_path / "no-such-file")}
    run("no file", "db", "upgrade", "--database-url", empty_pg_url, code=2, env=missing)
    checked = tmp_path / "checked.yaml"
    checked.write_text(yaml.safe_dump({"database": {"url": empty_pg_url}}))
    linq_env = {"LINQ_API_KEY": "k-123456", "LINQ_WEBHOOK_SECRET": "w-123456"}
    run("check no file", "config", "check", str(checked), code=2, env={**linq_env, **missing})
    # doctor, on a schedule naming the ledger with its password inline.
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump(
            {
                "database": {"url": inline},
                "linq": {"base_url": "http://127.0.0.1:1", "timeout": "1s"},
            }
        )
    )
    linq = {"LINQ_API_KEY": "k-123456", "LINQ_WEBHOOK_SECRET": "w-123456"}
    run("doctor", "doctor", "--config", str(good), code=1, env=linq)
    run("doctor json", "doctor", "--json", "--config", str(good), code=1, env=linq)

    for label, result in outputs:
        for secret in (PASSWORD, URL_PASSWORD):
            assert secret not in _shown(result), (label, _shown(result))
    # The checks above looked at real output: the commands said something about the ledger.
    said = {label: _shown(result) for label, result in outputs}
    assert "127.0.0.1" in said["doctor"] and "***" in said["doctor"]
    assert "not both" in said["both"]
    assert "is not a database URL" in said["config check"]
    assert "ledger unavailable" in said["down"]
    for label in ("no file", "check no file"):
        assert f"{DATABASE_PASSWORD_FILE_ENV}: cannot read" in said[label], said[label]


def test_reprs_never_show_the_password(empty_pg_url: str, tmp_path: Path) -> None:
    schedule_file = tmp_path / "s.yaml"
    schedule_file.write_text(
        yaml.safe_dump({"database": {"url": _with_password(empty_pg_url, URL_PASSWORD)}})
    )
    schedule, secrets = load_schedule(schedule_file, require_secrets=False)
    ledger = Ledger.from_config(schedule.database)
    for shown in (repr(schedule), str(schedule), repr(schedule.database), ledger.url,
                  repr(ledger.engine), repr(secrets)):  # fmt: skip
        assert URL_PASSWORD not in shown, shown
    assert "***" in repr(schedule.database)
