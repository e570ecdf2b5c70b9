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
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scheduler import validate
from scheduler.config_yaml import YamlProblem, load_yaml, read_schedule_text
from scheduler.errors import ConfigError, ConfigProblem
from scheduler.validate import STANDARD_PREFIX, check_signing_secret

CONFIG_ENV = "SHARE_SCHEDULER_CONFIG"
# The database password, kept out of the URL (a URL would need it percent-escaped).
DATABASE_PASSWORD_ENV = "SHARE_SCHEDULER_DATABASE_PASSWORD"  # noqa: S105 - a variable's name
DATABASE_PASSWORD_FILE_ENV = "SHARE_SCHEDULER_DATABASE_PASSWORD_FILE"  # noqa: S105
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


def _check_positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[Duration, AfterValidator(_check_positive)]
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
    base_url: str = Field(
        default="https://api.linqapp.com/api/partner",
        description="The Linq Partner API's base URL; /v3/... is appended.",
    )
    api_key_env: EnvName = Field(
        default="LINQ_API_KEY", description="Environment variable holding the Partner API token."
    )
    api_key_file: Path | None = Field(
        default=None,
        description="Read the API token from this file instead (e.g. a mounted secret).",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Timeout of one API request."
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=5), description="Timeout of opening a connection to the API."
    )
    max_connections: int = Field(
        default=64, ge=1, le=1000, description="Connections to the API kept open at most."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class DatabaseConfig(_Model):
    url: str = Field(
        default="sqlite+aiosqlite:///share-scheduler.db",
        description=(
            "The ledger: sqlite:///path for one host, postgresql://user@host/db for several "
            "replicas."
        ),
    )
    pool_size: int = Field(
        default=10, ge=1, le=200, description="Database connections per process."
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=5), description="Timeout of opening a database connection."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return normalize_database_url(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" else value


_URL_PASSWORD = re.compile(r"(?<=:)[^:@/]*(?=@)")


def redact_url(url: str) -> str:
    """A database URL fit to show: the password replaced by ``***``, whatever its shape.

    Every message, log event, repr and report that names a database URL goes through here.
    Plain text work, so that the schedule's module needs no database library: the userinfo of
    ``scheme://user:password@host/...`` is the part before the authority's last ``@``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not a URL at all: mask anything between a colon and an @.
        return _URL_PASSWORD.sub("***", url)
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if at and colon:
        authority = f"{user}:***@{host}"
    return f"{scheme}{sep}{authority}{slash}{tail}"


def database_password(env: Mapping[str, str] | None = None) -> Secret | None:
    """The password from $SHARE_SCHEDULER_DATABASE_PASSWORD or the file $..._PASSWORD_FILE
    names; it replaces any password in the URL. ConfigError (exit 2) on a bad setting."""
    env = os.environ if env is None else env
    value, path = env.get(DATABASE_PASSWORD_ENV), env.get(DATABASE_PASSWORD_FILE_ENV)
    if value and path:
        raise ConfigError(
            DATABASE_PASSWORD_FILE_ENV,
            [
                ConfigProblem(
                    "", f"set {DATABASE_PASSWORD_ENV} or {DATABASE_PASSWORD_FILE_ENV}, not both"
                )
            ],
        )
    if path:
        try:
            text = _read_secret_file(Path(path))
        except OSError as exc:
            raise ConfigError(
                DATABASE_PASSWORD_FILE_ENV,
                [ConfigProblem("", f"cannot read {path}: {exc.strerror}")],
            ) from exc
        if not text:
            raise ConfigError(DATABASE_PASSWORD_FILE_ENV, [ConfigProblem("", f"{path} is empty")])
        return Secret(text, DATABASE_PASSWORD_FILE_ENV)
    return Secret(value, DATABASE_PASSWORD_ENV) if value else None


def normalize_database_url(url: str) -> str:
    """Map plain ``sqlite://`` and ``postgresql://`` URLs to the async drivers we ship."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"{redact_url(url)!r} is not a database URL (sqlite:///path or postgresql://...)"
        )
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite or postgresql")


class WindowConfig(_Model):
    start: time = Field(
        default=time(9, 0), description="Local wall time (HH:MM) the daily share window opens."
    )
    end: time = Field(
        default=time(20, 0),
        description="Local wall time (HH:MM) it closes; before start, the window crosses midnight.",
    )
    days: list[Weekday] = Field(
        default_factory=lambda: list(ALL_DAYS),
        description="Weekdays (mon..sun) whose window is open, by the day the window opens.",
    )

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
    timezone: str = Field(
        default="UTC",
        description=(
            "Zone of the window: an IANA name, 'line' (each line's zone) or 'recipient' (from the"
            " recipient's number)."
        ),
    )
    fallback_timezone: ZoneName = Field(
        default="UTC",
        description=(
            "Zone for lines without one and recipients whose zone cannot be told; also the zone "
            "of 'today' in reports."
        ),
    )
    window: WindowConfig = Field(
        default_factory=WindowConfig, description="The daily share window."
    )
    min_interval: Duration = Field(
        default=timedelta(hours=12),
        description="Least time between two shares into one chat (at most 7d).",
    )
    first_share_delay: Duration = Field(
        default=timedelta(0),
        description="Wait after a chat's first outbound message before its first share.",
    )
    stop_after_inactive_days: int | None = Field(
        default=30,
        ge=1,
        description=(
            "Stop sharing into chats without a message for this many days (null: never stop)."
        ),
    )
    max_shares: int | None = Field(
        default=None, ge=1, description="Stop after this many shares into one chat (null: no cap)."
    )
    include_groups: bool = Field(default=False, description="Share into group chats too.")

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
    interval: PositiveDuration = Field(
        default=timedelta(seconds=30), description="How often the share pass looks for due chats."
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Chats claimed per claim transaction, at most."
    )
    concurrency: int = Field(
        default=16,
        ge=1,
        le=1000,
        description=(
            "Share calls in flight at once. Each worker's next chat is claimed a moment"
            " before it needs it (at most 4 claims ahead per worker), so that no call waits"
            " for a claim transaction."
        ),
    )
    requests_per_second: float = Field(
        default=20.0, gt=0, description="Cap on share calls per second, across the pass."
    )
    lease: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="Lifetime of a claim; must outlive one share call with all its retries.",
    )
    max_tries: int = Field(
        default=4, ge=1, le=20, description="Tries per claim for 5xx answers, timeouts and resets."
    )
    retry_backoff: Duration = Field(
        default=timedelta(milliseconds=500),
        description="First delay between tries (exponential, with jitter).",
    )
    retry_backoff_max: Duration = Field(
        default=timedelta(seconds=30), description="Longest delay between tries."
    )
    failure_backoff: Duration = Field(
        default=timedelta(minutes=5),
        description="Wait after all of a claim's tries failed (doubles each time).",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="On SIGTERM, how long in-flight calls may finish.",
    )
    # Finished share attempts older than this are deleted daily (null: kept forever).
    attempt_retention: Duration | None = Field(
        default=timedelta(days=180),
        description=(
            "Finished share attempts older than this are deleted daily (null: kept forever; at "
            "least 1d)."
        ),
    )

    @field_validator("attempt_retention")
    @classmethod
    def _retention(cls, value: timedelta | None) -> timedelta | None:
        # Attempts are history; the sharing rule reads chats only. A day keeps every attempt a
        # claim or an operator could still be asking about today.
        if value is not None and value < timedelta(days=1):
            raise ValueError("must be at least 1d (or null to keep attempts forever)")
        return value


class CardsConfig(_Model):
    check_interval: PositiveDuration = Field(
        default=timedelta(minutes=1),
        description=(
            "How often the cards are read (GET /v3/contact_card) and synced, and the ledger"
            " gauges read (a scan of the chats table)."
        ),
    )
    # After a card write: first activation poll, doubling up to check_interval, until this.
    activation_poll: PositiveDuration = Field(
        default=timedelta(seconds=2),
        description="After a card write, first look for activation (doubles up to check_interval).",
    )
    activation_timeout: PositiveDuration = Field(
        default=timedelta(minutes=15),
        description="Give up waiting for a written card to turn active after this long.",
    )
    # First wait after a 2022, 5xx or network failure of a card write (doubles, up to 1h).
    retry_wait: PositiveDuration = Field(
        default=timedelta(minutes=1),
        description=(
            "First wait after a card write failed with 2022, 5xx or a network error (doubles, up "
            "to 1h)."
        ),
    )


class CardConfig(_Model):
    first_name: str = Field(
        min_length=1, max_length=100, description="First name on the contact card."
    )
    last_name: str | None = Field(
        default=None, max_length=100, description="Last name on the contact card."
    )
    image_url: str | None = Field(default=None, description="http(s) URL of the card's image.")

    @field_validator("image_url")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class LineConfig(_Model):
    number: PhoneNumber = Field(
        description="The line's phone number, E.164 and quoted ('+14155550100')."
    )
    timezone: ZoneName | None = Field(
        default=None, description="The line's IANA zone, used when sharing.timezone is 'line'."
    )
    card: CardConfig | None = Field(
        default=None,
        description=(
            "The contact card the daemon creates or patches for this line (absent: observed only)."
        ),
    )


class WebhooksConfig(_Model):
    enabled: bool = Field(
        default=True,
        description="Serve the HTTP side: POST /webhooks/linq, /healthz, /readyz, /metrics.",
    )
    listen: str = Field(default="127.0.0.1:8080", description="HOST:PORT the HTTP side listens on.")
    secret_envs: list[EnvName] = Field(
        default_factory=lambda: ["LINQ_WEBHOOK_SECRET"],
        description=(
            "Environment variables holding webhook signing secrets (several during a rotation)."
        ),
    )
    secret_files: list[Path] = Field(
        default_factory=list, description="Files holding webhook signing secrets."
    )
    tolerance: Duration = Field(
        default=timedelta(minutes=5),
        description=(
            "Reject deliveries whose signed timestamp is further than this from this host's clock."
        ),
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest webhook body accepted (413 beyond)."
    )
    event_retention: Duration = Field(
        default=timedelta(days=7),
        description=(
            "How long seen event ids are kept to drop duplicates (longer than tolerance and 1h)."
        ),
    )

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

    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        le=1_048_576,
        description="Largest request head (request line and headers) in bytes; larger: 431.",
    )
    max_headers: int = Field(
        default=100, ge=10, le=1000, description="Most headers in one request; more: 431."
    )
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Time a client has to send a whole request head (1s to 10m); later: 408.",
    )
    body_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="Time a client has to send a whole body (1s to 10m); later: closed.",
    )
    keep_alive: Duration = Field(
        default=timedelta(seconds=5),
        description="How long an idle keep-alive connection is kept open (1s to 10m).",
    )
    max_connections: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="Open connections at most; past it the oldest silent one is closed, else 503.",
    )
    max_requests_in_flight: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Requests handled at once; past it 503 with Retry-After (never /healthz).",
    )

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

    enabled: bool = Field(default=True, description="Run the scheduled backfill in the daemon.")
    interval: Duration = Field(
        default=timedelta(hours=6), description="How often the daemon runs it (at least 1m)."
    )
    at_start: bool = Field(
        default=False, description="Also run it a few seconds after the daemon starts."
    )
    page_size: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Chats (and messages) asked per request (at most 100).",
    )
    message_concurrency: int = Field(
        default=4, ge=1, le=64, description="Message pages read at once."
    )
    max_tries: int = Field(
        default=5, ge=1, le=20, description="Tries per request for 5xx answers, timeouts and 429s."
    )
    retry_backoff: Duration = Field(
        default=timedelta(seconds=1), description="First delay between tries."
    )
    retry_backoff_max: Duration = Field(
        default=timedelta(seconds=60), description="Longest delay between tries."
    )
    max_retry_after: Duration = Field(
        default=timedelta(minutes=10),
        description="Longest Retry-After obeyed; a longer one ends the run.",
    )

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least level logged: debug, info, warning or error."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description=(
            "json (one object a line), console (for people), or auto (console on a terminal)."
        ),
    )


class Schedule(_Model):
    instance_id: str | None = Field(
        default=None,
        description=(
            "Names this replica in share attempts and logs (default: $SHARE_SCHEDULER_INSTANCE, "
            "else hostname-pid)."
        ),
    )
    linq: LinqConfig = Field(default_factory=LinqConfig, description="The Linq API.")
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig, description="The ledger database."
    )
    sharing: SharingConfig = Field(default_factory=SharingConfig, description="The sharing rule.")
    share_pass: SharePassConfig = Field(
        default_factory=SharePassConfig, description="The share pass: claims, concurrency, retries."
    )
    cards: CardsConfig = Field(
        default_factory=CardsConfig, description="Contact card checks and writes."
    )
    lines: list[LineConfig] = Field(
        default_factory=list, description="Our numbers, with their zones and declared cards."
    )
    webhooks: WebhooksConfig = Field(
        default_factory=WebhooksConfig, description="Linq webhooks and the HTTP side."
    )
    http: HttpConfig = Field(
        default_factory=HttpConfig,
        description="Bounds on what one client may make the HTTP server hold.",
    )
    backfill: BackfillConfig = Field(
        default_factory=BackfillConfig, description="The scheduled reconcile against GET /v3/chats."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logs (to stderr).")

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
        problems.append(_api_key_missing(schedule.linq.api_key_env))
    hooks: list[Secret] = []
    if schedule.webhooks.enabled:
        for i, name in enumerate(schedule.webhooks.secret_envs):
            if env.get(name):
                hooks.append(Secret(env[name], name))
                where = f"webhooks.secret_envs.{i}"
                problems.extend(_signing_secret_problems(where, f"${name}", env[name]))
            elif i == 0 and not schedule.webhooks.secret_files:
                problems.append(_webhook_secret_missing(name))
        for i, path in enumerate(schedule.webhooks.secret_files):
            where = f"webhooks.secret_files.{i}"
            try:
                hooks.append(Secret(_read_secret_file(path), where))
                problems.extend(_signing_secret_problems(where, str(path), hooks[-1].reveal()))
            except OSError as exc:
                problems.append(ConfigProblem(where, f"cannot read: {exc.strerror}"))
    return Secrets(api_key, hooks), problems


def _api_key_missing(name: str) -> ConfigProblem:
    return ConfigProblem(
        "linq.api_key_env", f"environment variable {name} is not set (the Linq API token)"
    )


def _webhook_secret_missing(name: str) -> ConfigProblem:
    # Only the first variable is required: the others are there during a rotation.
    return ConfigProblem(
        "webhooks.secret_envs.0",
        f"environment variable {name} is not set (the webhook signing secret)",
    )


def _signing_secret_problems(where: str, source: str, value: str) -> list[ConfigProblem]:
    """A ``whsec_`` secret must decode, or no Standard Webhooks delivery would verify."""
    if not value.startswith(STANDARD_PREFIX):
        return []
    try:
        check_signing_secret(value)
    except ValueError as exc:
        return [ConfigProblem(where, f"{source} is not a signing secret: {exc}")]
    return []


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
        problems.append(_api_key_missing(name))
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
        problems.append(_webhook_secret_missing(names[0]))
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
    try:
        database_password(env)
    except ConfigError as exc:
        problems.extend(ConfigProblem(exc.source, str(p)) for p in exc.problems)
    if problems and require_secrets:
        raise ConfigError(source, problems)
    return schedule, secrets
