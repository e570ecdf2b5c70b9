"""The schedule file: one YAML document, validated with pydantic.

Errors name the file, the field path and what is wrong. Secrets never live in the YAML: the
file names the environment variables (or files) that hold them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scheduler.config_yaml import YamlProblem, load_yaml, read_schedule_text
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.ingest import validate

CONFIG_ENV = "SHARE_SCHEDULER_CONFIG"
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """Accept ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 12h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _DURATION_PART.sub("", text) == "":
            total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
            return timedelta(seconds=total)
    raise ValueError(f"expected a duration such as 30s, 5m, 12h or 1d, got {value!r}")


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Paris)"
        ) from exc
    return name


def _check_e164(value: Any) -> Any:
    if isinstance(value, int):
        raise ValueError("phone numbers must be quoted strings in E.164, e.g. '+14155550100'")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an E.164 phone number (+ then 8-15 digits)")
    try:
        # The same check as webhooks, imports and command-line arguments.
        return validate.check_phone_number(value)
    except validate.InvalidValue as exc:
        raise ValueError(str(exc)) from exc


def _check_env_name(value: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PhoneNumber = Annotated[str, BeforeValidator(_check_e164)]
ZoneName = Annotated[str, BeforeValidator(_check_zone)]
EnvName = Annotated[str, BeforeValidator(_check_env_name)]


class Weekday(StrEnum):
    mon = "mon"
    tue = "tue"
    wed = "wed"
    thu = "thu"
    fri = "fri"
    sat = "sat"
    sun = "sun"

    @property
    def number(self) -> int:
        return list(Weekday).index(self)


ALL_DAYS = list(Weekday)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret:
    """A secret value whose repr and str never show it."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r}, value='**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class LinqConfig(_Model):
    base_url: str = "https://api.linqapp.com/api/partner"
    api_key_env: EnvName = "LINQ_API_KEY"
    api_key_file: Path | None = None
    timeout: Duration = timedelta(seconds=10)
    connect_timeout: Duration = timedelta(seconds=5)
    max_connections: int = Field(default=64, ge=1, le=1000)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class DatabaseConfig(_Model):
    url: str = "sqlite+aiosqlite:///share-scheduler.db"
    pool_size: int = Field(default=10, ge=1, le=200)
    connect_timeout: Duration = timedelta(seconds=5)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return normalize_database_url(value)


def normalize_database_url(url: str) -> str:
    """Map plain ``sqlite://`` and ``postgresql://`` URLs to the async drivers we ship."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a database URL (sqlite:///path or postgresql://...)")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite or postgresql")


class WindowConfig(_Model):
    start: time = time(9, 0)
    end: time = time(20, 0)
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 09:00 unquoted as the sexagesimal integer 540.
            hours, minutes = divmod(value, 60)
            if 0 <= hours < 24:
                return time(hours, minutes)
        if isinstance(value, str) and re.match(r"^\d{1,2}:\d{2}$", value.strip()):
            hours_s, minutes_s = value.strip().split(":")
            return time(int(hours_s), int(minutes_s))
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> WindowConfig:
        if self.start == self.end:
            raise ValueError("the share window is empty: start and end are equal")
        if not self.days:
            raise ValueError("the share window is empty: no days listed")
        if len(set(self.days)) != len(self.days):
            raise ValueError("a day is listed twice")
        return self

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start


class SharingConfig(_Model):
    timezone: str = "UTC"
    fallback_timezone: ZoneName = "UTC"
    window: WindowConfig = Field(default_factory=WindowConfig)
    min_interval: Duration = timedelta(hours=12)
    first_share_delay: Duration = timedelta(0)
    stop_after_inactive_days: int | None = Field(default=30, ge=1)
    max_shares: int | None = Field(default=None, ge=1)
    include_groups: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if value in ("line", "recipient"):
            return value
        return _check_zone(value)

    @field_validator("min_interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=7):
            raise ValueError("min_interval above 7d would skip whole weeks")
        return value


class SharePassConfig(_Model):
    interval: Duration = timedelta(seconds=30)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    concurrency: int = Field(default=16, ge=1, le=1000)
    requests_per_second: float = Field(default=20.0, gt=0)
    lease: Duration = timedelta(minutes=5)
    max_tries: int = Field(default=4, ge=1, le=20)
    retry_backoff: Duration = timedelta(milliseconds=500)
    retry_backoff_max: Duration = timedelta(seconds=30)
    failure_backoff: Duration = timedelta(minutes=5)
    shutdown_grace: Duration = timedelta(seconds=10)
    # Finished share attempts older than this are deleted daily (null: kept forever).
    attempt_retention: Duration | None = timedelta(days=180)

    @field_validator("interval", "lease")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than zero")
        return value

    @field_validator("attempt_retention")
    @classmethod
    def _retention(cls, value: timedelta | None) -> timedelta | None:
        # Attempts are history; the sharing rule reads chats only. A day keeps every attempt a
        # claim or an operator could still be asking about today.
        if value is not None and value < timedelta(days=1):
            raise ValueError("must be at least 1d (or null to keep attempts forever)")
        return value


class CardsConfig(_Model):
    check_interval: Duration = timedelta(minutes=1)
    # After a card write: first activation poll, doubling up to check_interval, until this.
    activation_poll: Duration = timedelta(seconds=2)
    activation_timeout: Duration = timedelta(minutes=15)
    # First wait after a 2022, 5xx or network failure of a card write (doubles, up to 1h).
    retry_wait: Duration = timedelta(minutes=1)

    @field_validator("check_interval", "activation_poll", "activation_timeout", "retry_wait")
    @classmethod
    def _card_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than zero")
        return value


class CardConfig(_Model):
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    image_url: str | None = None

    @field_validator("image_url")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class LineConfig(_Model):
    number: PhoneNumber
    timezone: ZoneName | None = None
    card: CardConfig | None = None


class WebhooksConfig(_Model):
    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    secret_envs: list[EnvName] = Field(default_factory=lambda: ["LINQ_WEBHOOK_SECRET"])
    secret_files: list[Path] = Field(default_factory=list)
    tolerance: Duration = timedelta(minutes=5)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    event_retention: Duration = timedelta(days=7)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @model_validator(mode="after")
    def _replays(self) -> WebhooksConfig:
        # An event id pruned while its delivery still passes the timestamp check could be
        # replayed; Linq also retries a delivery for about 25 minutes under the same id.
        if self.event_retention <= max(self.tolerance, timedelta(hours=1)):
            raise ValueError(
                "event_retention must be longer than tolerance and than 1h (Linq retries a "
                "delivery for about 25 minutes under the same event id)"
            )
        return self


class HttpConfig(_Model):
    """Bounds on what one client may make the HTTP server hold (webhooks, probes, metrics)."""

    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    max_headers: int = Field(default=100, ge=10, le=1000)
    header_timeout: Duration = timedelta(seconds=10)
    body_timeout: Duration = timedelta(seconds=30)
    keep_alive: Duration = timedelta(seconds=5)
    max_connections: int = Field(default=1000, ge=10, le=100_000)
    max_requests_in_flight: int = Field(default=256, ge=1, le=100_000)

    @field_validator("header_timeout", "body_timeout", "keep_alive")
    @classmethod
    def _http_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        if value > timedelta(minutes=10):
            raise ValueError("must be at most 10m")
        return value


class BackfillConfig(_Model):
    """The scheduled reconcile against GET /v3/chats (also ``share-scheduler backfill``)."""

    enabled: bool = True
    interval: Duration = timedelta(hours=6)
    at_start: bool = False
    page_size: int = Field(default=100, ge=1, le=100)
    message_concurrency: int = Field(default=4, ge=1, le=64)
    max_tries: int = Field(default=5, ge=1, le=20)
    retry_backoff: Duration = timedelta(seconds=1)
    retry_backoff_max: Duration = timedelta(seconds=60)
    max_retry_after: Duration = timedelta(minutes=10)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Schedule(_Model):
    instance_id: str | None = None
    linq: LinqConfig = Field(default_factory=LinqConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    sharing: SharingConfig = Field(default_factory=SharingConfig)
    share_pass: SharePassConfig = Field(default_factory=SharePassConfig)
    cards: CardsConfig = Field(default_factory=CardsConfig)
    lines: list[LineConfig] = Field(default_factory=list)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    backfill: BackfillConfig = Field(default_factory=BackfillConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Schedule:
        seen: set[str] = set()
        for line in self.lines:
            if line.number in seen:
                raise ValueError(f"line {line.number} is listed twice")
            seen.add(line.number)
        tries = self.share_pass.max_tries
        worst_call = (self.linq.timeout + self.share_pass.retry_backoff_max) * tries
        if self.share_pass.lease <= worst_call:
            raise ValueError(
                f"share_pass.lease ({self.share_pass.lease}) must exceed the longest share call "
                f"with retries ({worst_call}): a claim must outlive its call"
            )
        return self

    def line(self, number: str) -> LineConfig | None:
        for line in self.lines:
            if line.number == number:
                return line
        return None


class Secrets:
    """The API token and the webhook signing secrets, resolved from env vars or files."""

    def __init__(self, api_key: Secret | None, webhook_secrets: list[Secret]) -> None:
        self.api_key = api_key
        self.webhook_secrets = webhook_secrets

    def __repr__(self) -> str:
        return f"Secrets(api_key={self.api_key!r}, webhook_secrets={len(self.webhook_secrets)})"


def _read_secret_file(path: Path) -> str:
    return path.read_text().strip()


def resolve_secrets(
    schedule: Schedule, env: Mapping[str, str] | None = None
) -> tuple[Secrets, list[ConfigProblem]]:
    env = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    api_key: Secret | None = None
    if schedule.linq.api_key_file is not None:
        try:
            api_key = Secret(_read_secret_file(schedule.linq.api_key_file), "linq.api_key_file")
        except OSError as exc:
            problems.append(ConfigProblem("linq.api_key_file", f"cannot read: {exc.strerror}"))
    elif env.get(schedule.linq.api_key_env):
        api_key = Secret(env[schedule.linq.api_key_env], schedule.linq.api_key_env)
    else:
        problems.append(
            ConfigProblem(
                "linq.api_key_env",
                f"environment variable {schedule.linq.api_key_env} is not set (the Linq API token)",
            )
        )
    hooks: list[Secret] = []
    if schedule.webhooks.enabled:
        for i, name in enumerate(schedule.webhooks.secret_envs):
            if env.get(name):
                hooks.append(Secret(env[name], name))
            elif i == 0 and not schedule.webhooks.secret_files:
                problems.append(
                    ConfigProblem(
                        f"webhooks.secret_envs.{i}",
                        f"environment variable {name} is not set (the webhook signing secret)",
                    )
                )
        for i, path in enumerate(schedule.webhooks.secret_files):
            try:
                hooks.append(Secret(_read_secret_file(path), f"webhooks.secret_files.{i}"))
            except OSError as exc:
                problems.append(
                    ConfigProblem(f"webhooks.secret_files.{i}", f"cannot read: {exc.strerror}")
                )
    return Secrets(api_key, hooks), problems


def _problem_from_pydantic(err: Any) -> ConfigProblem:
    path = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    if kind not in ("extra_forbidden", "missing") and "input" in err and not path.endswith("url"):
        shown = repr(err["input"])
        if len(shown) <= 60 and shown not in msg and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {shown})"
    return ConfigProblem(path, msg)


def _raw_secret_problems(
    data: dict[str, Any], env: Mapping[str, str] | None
) -> list[ConfigProblem]:
    """Best-effort secret checks for a file that failed validation, so one run shows all."""
    env = os.environ if env is None else env
    linq = data.get("linq") if isinstance(data.get("linq"), dict) else {}
    name = linq.get("api_key_env", "LINQ_API_KEY") if isinstance(linq, dict) else "LINQ_API_KEY"
    problems = []
    if isinstance(name, str) and "api_key_file" not in (linq or {}) and not env.get(name):
        problems.append(
            ConfigProblem(
                "linq.api_key_env",
                f"environment variable {name} is not set (the Linq API token)",
            )
        )
    hooks = data.get("webhooks") if isinstance(data.get("webhooks"), dict) else {}
    names = (hooks or {}).get("secret_envs", ["LINQ_WEBHOOK_SECRET"])
    enabled = (hooks or {}).get("enabled", True) is not False
    if (
        enabled
        and isinstance(names, list)
        and names
        and isinstance(names[0], str)
        and not (hooks or {}).get("secret_files")
        and not env.get(names[0])
    ):
        problems.append(
            ConfigProblem(
                "webhooks.secret_envs.0",
                f"environment variable {names[0]} is not set (the webhook signing secret)",
            )
        )
    return problems


def parse_schedule(data: Any, source: str) -> Schedule:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "the schedule file must be a YAML mapping")])
    try:
        return Schedule.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_problem_from_pydantic(e) for e in exc.errors()]) from exc


def load_schedule(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    require_secrets: bool = True,
    database_url: str | None = None,
) -> tuple[Schedule, Secrets]:
    """Read and validate the schedule file; raise ConfigError listing every problem."""
    source = str(path)
    try:
        text = read_schedule_text(Path(path))
        data = load_yaml(text)
    except OSError as exc:
        raise ConfigError(source, [ConfigProblem("", f"cannot read: {exc.strerror}")]) from exc
    except YamlProblem as exc:
        raise ConfigError(source, [ConfigProblem("", str(exc))]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem("", f"invalid YAML: {where}{problem}")]) from exc
    if database_url is not None and isinstance(data, dict):
        data = {**data, "database": {**(data.get("database") or {}), "url": database_url}}
    try:
        schedule = parse_schedule(data, source)
    except ConfigError as exc:
        if require_secrets and isinstance(data, dict):
            exc.problems.extend(_raw_secret_problems(data, env))
        raise ConfigError(source, exc.problems) from exc.__cause__
    secrets, problems = resolve_secrets(schedule, env)
    if problems and require_secrets:
        raise ConfigError(source, problems)
    return schedule, secrets
