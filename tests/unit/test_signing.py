"""Webhook signature verification: Standard Webhooks and the legacy scheme, pure."""

from __future__ import annotations

import base64
import time

import pytest

from scheduler.ingest.signing import (
    SignatureHeaders,
    SignatureScheme,
    SignatureVerdict,
    WebhookVerifier,
    new_standard_secret,
    sign,
    sign_standard,
    standard_webhook,
)

KEY = "whsec_" + base64.b64encode(b"unit-test-signing-key-0123456").decode()
LEGACY_ONLY = "plain-legacy-secret"
BODY = b'{"event_id":"ev-1","event_type":"message.sent"}'
NOW = 1_780_000_000


def standard(
    secret: str = KEY, *, ts: int = NOW, body: bytes = BODY, msg_id: str = "ev-1"
) -> SignatureHeaders:
    return SignatureHeaders(
        webhook_id=msg_id,
        webhook_timestamp=str(ts),
        webhook_signature=sign_standard(standard_webhook(secret), msg_id, ts, body),
    )


def check(verifier: WebhookVerifier, headers: SignatureHeaders, body: bytes = BODY) -> object:
    result = verifier.verify(headers, body, now_unix=NOW, tolerance_seconds=300)
    return result.scheme, result.verdict


def test_a_standard_signature_is_what_the_standardwebhooks_package_verifies() -> None:
    headers = standard()
    # The package's own verify (wall clock, 5 minutes) accepts what we sign, at our time.
    webhook = standard_webhook(KEY)
    now_headers = standard(ts=int(time.time()))
    webhook.verify(
        BODY,
        {
            "webhook-id": now_headers.webhook_id or "",
            "webhook-timestamp": now_headers.webhook_timestamp or "",
            "webhook-signature": now_headers.webhook_signature or "",
        },
    )
    assert check(WebhookVerifier([KEY]), headers) == (
        SignatureScheme.standard,
        SignatureVerdict.valid,
    )


def test_any_v1_entry_may_match_and_other_versions_are_skipped() -> None:
    good = standard().webhook_signature
    assert good is not None
    entries = f"v2,{good[3:]} v1,!!notbase64 v1,{base64.b64encode(b'x' * 32).decode()} {good}"
    headers = SignatureHeaders(
        webhook_id="ev-1", webhook_timestamp=str(NOW), webhook_signature=entries
    )
    assert check(WebhookVerifier([KEY]), headers)[1] == SignatureVerdict.valid
    only_v2 = SignatureHeaders(
        webhook_id="ev-1", webhook_timestamp=str(NOW), webhook_signature=f"v2,{good[3:]}"
    )
    assert check(WebhookVerifier([KEY]), only_v2)[1] == SignatureVerdict.mismatch


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        (standard(ts=NOW - 301), SignatureVerdict.stale),
        (standard(ts=NOW + 301), SignatureVerdict.stale),
        (standard(msg_id="ev-2"), SignatureVerdict.valid),  # signed over the id it carries
        (
            SignatureHeaders(webhook_id="ev-1", webhook_timestamp="1e9", webhook_signature="v1,a"),
            SignatureVerdict.malformed_timestamp,
        ),
        (
            SignatureHeaders(webhook_id="ev-1", webhook_timestamp="١٢٣", webhook_signature="v1,a"),
            SignatureVerdict.malformed_timestamp,
        ),
    ],
)
def test_timestamps_and_ids(headers: SignatureHeaders, verdict: SignatureVerdict) -> None:
    assert check(WebhookVerifier([KEY]), headers)[1] == verdict


def test_a_signature_over_another_id_or_body_does_not_verify() -> None:
    headers = standard()
    moved = SignatureHeaders(
        webhook_id="ev-2",
        webhook_timestamp=headers.webhook_timestamp,
        webhook_signature=headers.webhook_signature,
    )
    assert check(WebhookVerifier([KEY]), moved)[1] == SignatureVerdict.mismatch
    assert check(WebhookVerifier([KEY]), headers, BODY + b" ")[1] == SignatureVerdict.mismatch
    assert check(WebhookVerifier([KEY]), headers, b"\xff\xfe")[1] == SignatureVerdict.mismatch


def test_standard_is_preferred_and_partial_standard_headers_fall_back_to_legacy() -> None:
    verifier = WebhookVerifier([KEY])
    legacy_sig = sign(KEY, NOW, BODY)
    wrong_standard = standard(new_standard_secret())
    both = SignatureHeaders(
        webhook_id=wrong_standard.webhook_id,
        webhook_timestamp=wrong_standard.webhook_timestamp,
        webhook_signature=wrong_standard.webhook_signature,
        legacy_timestamp=str(NOW),
        legacy_signature=legacy_sig,
    )
    assert check(verifier, both) == (SignatureScheme.standard, SignatureVerdict.mismatch)
    partial = SignatureHeaders(
        webhook_id="ev-1", legacy_timestamp=str(NOW), legacy_signature=legacy_sig
    )
    assert check(verifier, partial) == (SignatureScheme.legacy, SignatureVerdict.valid)
    assert check(verifier, SignatureHeaders(webhook_id="ev-1")) == (None, SignatureVerdict.missing)


def test_rotation_tries_every_secret_for_both_schemes() -> None:
    new = new_standard_secret()
    verifier = WebhookVerifier([KEY, new, LEGACY_ONLY])
    assert check(verifier, standard(new))[1] == SignatureVerdict.valid
    assert check(verifier, standard(KEY))[1] == SignatureVerdict.valid
    for secret in (KEY, new, LEGACY_ONLY):
        legacy = SignatureHeaders(
            legacy_timestamp=str(NOW), legacy_signature=sign(secret, NOW, BODY)
        )
        assert check(verifier, legacy) == (SignatureScheme.legacy, SignatureVerdict.valid)
    # A secret without whsec_ cannot verify Standard deliveries.
    assert check(WebhookVerifier([LEGACY_ONLY]), standard())[1] == SignatureVerdict.mismatch


def test_new_secrets_are_fresh_and_usable() -> None:
    first, second = new_standard_secret(), new_standard_secret()
    assert first != second and first.startswith("whsec_")
    standard_webhook(first)
