"""The one clock seam. Everything that asks the time calls :func:`now`.

In-process tests drive it with freezegun. End-to-end tests drive real processes (daemon and
simulator) at once: when ``SHARE_SCHEDULER_CLOCK_FILE`` names a file, its content is an offset
in seconds added to the real UTC time. Time keeps flowing, so timeouts and leases behave, and a
test jumps days ahead by rewriting one number that every process reads.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLOCK_FILE_ENV = "SHARE_SCHEDULER_CLOCK_FILE"

_cache: tuple[str, float, float] | None = None  # (path, mtime, offset)


def _offset_seconds() -> float:
    global _cache
    path = os.environ.get(CLOCK_FILE_ENV)
    if not path:
        return 0.0
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0.0
    if _cache is not None and _cache[0] == path and _cache[1] == mtime:
        return _cache[2]
    text = Path(path).read_text().strip()
    try:
        offset = float(text) if text else 0.0
    except ValueError as exc:
        raise ValueError(f"{CLOCK_FILE_ENV}={path}: expected seconds, got {text!r}") from exc
    _cache = (path, mtime, offset)
    return offset


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    current = datetime.now(UTC)
    offset = _offset_seconds()
    return current + timedelta(seconds=offset) if offset else current


def set_clock_file(path: str | os.PathLike[str], target: datetime) -> None:
    """Write ``path`` so that :func:`now` in every process reading it returns ``target`` now."""
    if target.tzinfo is None:
        raise ValueError("target must be timezone-aware")
    offset = (target - datetime.now(UTC)).total_seconds()
    tmp = Path(f"{path}.tmp")
    tmp.write_text(f"{offset:.6f}\n")
    os.replace(tmp, path)
    # mtime granularity can hide two writes within one tick; force a distinct stamp.
    stamp = time.time_ns()
    os.utime(path, ns=(stamp, stamp))
