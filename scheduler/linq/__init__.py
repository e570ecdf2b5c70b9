"""Async client of the Linq Partner API v3 and the retry policy around it."""

from scheduler.linq.client import LinqClient
from scheduler.linq.envelope import parse_error, parse_retry_after
from scheduler.linq.retry import backoff_ceiling, backoff_delay, is_retryable
from scheduler.linq.types import (
    Chat,
    ChatPage,
    ContactCard,
    Handle,
    HealthStatus,
    Message,
    MessagePage,
    ShareResult,
)

__all__ = [
    "Chat",
    "ChatPage",
    "ContactCard",
    "Handle",
    "HealthStatus",
    "LinqClient",
    "Message",
    "MessagePage",
    "ShareResult",
    "backoff_ceiling",
    "backoff_delay",
    "is_retryable",
    "parse_error",
    "parse_retry_after",
]
