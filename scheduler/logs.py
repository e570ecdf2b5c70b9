"""structlog set-up: JSON lines for machines, colour for terminals, secrets never shown.

Every event has a stable dotted name (``share.succeeded``, ``webhook.rejected``...) and
carries its context (chat_id, line, pass_id, trace_id) bound with structlog's contextvars.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from scheduler.errors import ConfigError, ConfigProblem

# Where log lines go: stderr by default, stdout in the container image (its Dockerfile sets it).
LOG_STREAM_ENV = "SHARE_SCHEDULER_LOG_STREAM"
REDACTED = "**********"
_HANDLER_NAME = "share-scheduler"
# Tracebacks as data, without local variables: a local may hold a secret or a message body.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)
_SENSITIVE_KEYS = frozenset(
    {"token", "api_key", "authorization", "secret", "password", "webhook_secret", "signature"}
)
_secrets: set[str] = set()
# The level configure_logging filters at; 0 (everything) until it is called.
_level = 0


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never be printed, whatever key or message they hide in."""
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)


def redact_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if k.lower() in _SENSITIVE_KEYS else _redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    for key in list(event):
        if key.lower() in _SENSITIVE_KEYS:
            event[key] = REDACTED
        else:
            event[key] = _redact(event[key])
    return event


def _final_redact(_logger: Any, _name: str, rendered: Any) -> Any:
    # Exceptions are rendered to text late; scrub the finished line too.
    return redact_text(rendered) if isinstance(rendered, str) and _secrets else rendered


def debug_enabled() -> bool:
    """Whether debug events pass the configured filter: skips building them per request."""
    return _level <= logging.DEBUG


def default_stream() -> TextIO:
    """The stream $SHARE_SCHEDULER_LOG_STREAM names (``stdout`` or ``stderr``, the default)."""
    name = os.environ.get(LOG_STREAM_ENV, "stderr").strip().lower() or "stderr"
    if name == "stdout":
        return sys.stdout
    if name == "stderr":
        return sys.stderr
    raise ConfigError(
        LOG_STREAM_ENV, [ConfigProblem("", f"must be stdout or stderr, got {name!r}")]
    )


def _stamp_and_redact(use_console: bool) -> list[Any]:
    """The steps our events and the libraries' records share before rendering."""
    steps: list[Any] = [structlog.processors.TimeStamper(fmt="iso", utc=True), redact_processor]
    if not use_console:
        steps.append(_TRACEBACKS)  # the console renderer formats tracebacks itself
    return steps


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    global _level
    stream = stream or default_stream()
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        *_stamp_and_redact(use_console),
        renderer,
        _final_redact,
    ]
    _level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, apscheduler, alembic) stay
    # quiet but for warnings, and go to the same stream in the same format: JSON lines with an
    # event name and the logger's name, redacted like our own events.
    foreign: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        *_stamp_and_redact(use_console),
    ]
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                _final_redact,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the design, not a problem.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
