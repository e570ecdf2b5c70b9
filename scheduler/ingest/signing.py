"""Linq webhook signatures: Standard Webhooks, and the deprecated ``X-Webhook-*`` scheme.

Standard Webhooks (standardwebhooks.com, what Linq signs with today): headers ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` (space-separated ``v1,<base64>`` entries, several
during a secret rotation), an HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"`` keyed with the
base64 part of a ``whsec_`` secret. The ``standardwebhooks`` package computes the signature; the
timestamp is checked here against :func:`scheduler.clock.now` (the package would read the
wall clock and fix the tolerance at 5 minutes).

Legacy (deprecated, still sent): ``X-Webhook-Timestamp`` and ``X-Webhook-Signature``, the
lowercase hex HMAC-SHA256 of ``"{timestamp}.{raw body}"`` keyed with the secret as text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from standardwebhooks import Webhook

from scheduler.validate import STANDARD_PREFIX, check_signing_secret


class SignatureVerdict(StrEnum):
    valid = "valid"
    missing = "missing"
    malformed_timestamp = "malformed_timestamp"
    stale = "stale"
    mismatch = "mismatch"


class SignatureScheme(StrEnum):
    """Which headers a delivery was verified with (a bounded metric label)."""

    standard = "standard"
    legacy = "legacy"


@dataclass(frozen=True, slots=True)
class Verification:
    verdict: SignatureVerdict
    # None when the delivery carries neither scheme's headers.
    scheme: SignatureScheme | None


@dataclass(frozen=True, slots=True)
class SignatureHeaders:
    """The signature headers of one delivery, as received (None when absent)."""

    webhook_id: str | None = None
    webhook_timestamp: str | None = None
    webhook_signature: str | None = None
    legacy_timestamp: str | None = None
    legacy_signature: str | None = None

    @property
    def has_standard(self) -> bool:
        return bool(self.webhook_id and self.webhook_timestamp and self.webhook_signature)

    @property
    def has_legacy(self) -> bool:
        return bool(self.legacy_timestamp and self.legacy_signature)


def new_standard_secret() -> str:
    """A fresh ``whsec_`` signing secret (24 random bytes), as Linq hands them out."""
    return STANDARD_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode("ascii")


def standard_webhook(secret: str) -> Webhook:
    """The Standard Webhooks signer of a ``whsec_`` secret; ValueError if it is not one."""
    return Webhook(check_signing_secret(secret))


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The legacy ``X-Webhook-Signature`` of a body."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_standard(webhook: Webhook, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry of a ``webhook-signature`` header."""
    return webhook.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8"))


def _timestamp_verdict(
    timestamp: str, now_unix: float, tolerance_seconds: float
) -> SignatureVerdict | None:
    # isascii first: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return SignatureVerdict.malformed_timestamp
    if abs(now_unix - int(timestamp)) > tolerance_seconds:
        return SignatureVerdict.stale
    return None


def _standard_entries(header: str) -> list[bytes]:
    """The decoded ``v1`` signatures of a ``webhook-signature`` header; others are skipped."""
    found = []
    for entry in header.split()[:16]:
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


class WebhookVerifier:
    """Verifies deliveries against every accepted secret (several during a rotation).

    Built once per set of secrets: the Standard Webhooks key of each ``whsec_`` secret is
    decoded here, not per delivery. A secret without the prefix verifies legacy headers only.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        self._legacy = [s.encode("utf-8") for s in secrets]
        self._standard = [standard_webhook(s) for s in secrets if s.startswith(STANDARD_PREFIX)]

    def verify(
        self,
        headers: SignatureHeaders,
        body: bytes,
        *,
        now_unix: float,
        tolerance_seconds: float,
    ) -> Verification:
        """Standard Webhooks when its three headers are present, else the legacy headers."""
        if headers.has_standard:
            return Verification(
                self._verify_standard(headers, body, now_unix, tolerance_seconds),
                SignatureScheme.standard,
            )
        if headers.has_legacy:
            return Verification(
                self._verify_legacy(headers, body, now_unix, tolerance_seconds),
                SignatureScheme.legacy,
            )
        return Verification(SignatureVerdict.missing, None)

    def _verify_standard(
        self, headers: SignatureHeaders, body: bytes, now_unix: float, tolerance_seconds: float
    ) -> SignatureVerdict:
        assert headers.webhook_id and headers.webhook_timestamp and headers.webhook_signature
        timestamp = headers.webhook_timestamp
        problem = _timestamp_verdict(timestamp, now_unix, tolerance_seconds)
        if problem is not None:
            return problem
        given = _standard_entries(headers.webhook_signature)
        if not given or not self._standard:
            return SignatureVerdict.mismatch
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return SignatureVerdict.mismatch
        at = datetime.fromtimestamp(int(timestamp), UTC)
        matched = False
        for webhook in self._standard:
            expected = base64.b64decode(webhook.sign(headers.webhook_id, at, text)[3:])
            # Compared with every entry and every secret: timing tells nothing of which matched.
            for signature in given:
                matched |= hmac.compare_digest(expected, signature)
        return SignatureVerdict.valid if matched else SignatureVerdict.mismatch

    def _verify_legacy(
        self, headers: SignatureHeaders, body: bytes, now_unix: float, tolerance_seconds: float
    ) -> SignatureVerdict:
        assert headers.legacy_timestamp and headers.legacy_signature
        return _verify_legacy(
            self._legacy,
            headers.legacy_timestamp,
            headers.legacy_signature,
            body,
            now_unix,
            tolerance_seconds,
        )


def _verify_legacy(
    keys: Iterable[bytes],
    timestamp: str,
    signature: str,
    body: bytes,
    now_unix: float,
    tolerance_seconds: float,
) -> SignatureVerdict:
    problem = _timestamp_verdict(timestamp, now_unix, tolerance_seconds)
    if problem is not None:
        return problem
    given = signature.strip().lower().encode("ascii", "replace")
    message = timestamp.encode("ascii") + b"." + body
    matched = False
    for key in keys:
        # Compared with every secret: timing tells nothing of which one matched.
        expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    return SignatureVerdict.valid if matched else SignatureVerdict.mismatch


def verify(
    *,
    secrets: Iterable[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now_unix: float,
    tolerance_seconds: float,
) -> SignatureVerdict:
    """Check a legacy-signed delivery against every accepted secret."""
    if not timestamp or not signature:
        return SignatureVerdict.missing
    keys = [s.encode("utf-8") for s in secrets]
    return _verify_legacy(keys, timestamp, signature, body, now_unix, tolerance_seconds)
