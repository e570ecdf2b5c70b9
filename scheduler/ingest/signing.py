"""Linq webhook signatures: HMAC-SHA256 over ``"{timestamp}.{raw body}"``, lowercase hex."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from enum import StrEnum


class SignatureVerdict(StrEnum):
    valid = "valid"
    missing = "missing"
    malformed_timestamp = "malformed_timestamp"
    stale = "stale"
    mismatch = "mismatch"


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    *,
    secrets: Iterable[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now_unix: float,
    tolerance_seconds: float,
) -> SignatureVerdict:
    """Check a delivery against every accepted secret (several during a rotation)."""
    if not timestamp or not signature:
        return SignatureVerdict.missing
    # isascii first: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return SignatureVerdict.malformed_timestamp
    if abs(now_unix - int(timestamp)) > tolerance_seconds:
        return SignatureVerdict.stale
    given = signature.strip().lower().encode("ascii", "replace")
    matched = False
    for secret in secrets:
        # Compare against every secret, so timing does not reveal which one matched.
        matched |= hmac.compare_digest(sign(secret, timestamp, body).encode("ascii"), given)
    return SignatureVerdict.valid if matched else SignatureVerdict.mismatch
