"""The checks every way in shares: webhook, ``ledger import``, backfill, CLI arguments and the
schedule file.

One definition of a valid identifier, handle, phone number and signing secret, so that a value
one door refuses cannot come in through another. Each check returns the value or raises
:class:`InvalidValue` whose message says what is wrong (without the field name: each caller
knows its field and prefixes it, in its own error type).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

# Linq's chat, message and event ids are UUIDs; the simulator's and tests' ids are short ASCII
# words. Anything else (markup, quotes, spaces, non-ASCII look-alikes) is not an id Linq sends
# and would only reach logs, terminals and dashboards as a hazard.
MAX_ID_LENGTH = 128
MAX_HANDLE_LENGTH = 320
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/~-]*")
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
EMAIL = re.compile(r"[^@\s,;<>\"'`]+@[^@\s,;<>\"'`]+\.[^@\s,;<>\"'`]+")
# Standard Webhooks (standardwebhooks.com) signing secrets: this prefix, then a base64 key.
STANDARD_PREFIX = "whsec_"


class InvalidValue(ValueError):
    """A value no door accepts; the message says why."""


def _hostile_characters(value: str) -> str | None:
    """What is wrong with characters that must never be stored, or None."""
    if value.isascii() and value.isprintable():
        # Every id, time and number Linq sends: no control, surrogate or format character
        # is printable ASCII, so the walk over the characters below has nothing to find.
        return None
    if "\x00" in value:
        return "contains a NUL character"
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            return "contains control characters"
        if category == "Cs":
            return "contains characters that cannot be stored (lone surrogates)"
        if category == "Cf":
            # Bidi overrides (U+202E), zero-width spaces and joiners, byte order marks: they
            # make two different ids look alike, or reorder what an operator reads.
            return f"contains an invisible formatting character (U+{ord(char):04X})"
    return None


def check_plain_text(value: str, *, limit: int) -> str:
    """Non-empty text of at most ``limit`` characters, none of them control or invisible."""
    if not value:
        raise InvalidValue("is empty")
    if len(value) > limit:
        raise InvalidValue(f"is longer than {limit} characters")
    problem = _hostile_characters(value)
    if problem is not None:
        raise InvalidValue(problem)
    return value


def check_identifier(value: str, *, limit: int = MAX_ID_LENGTH) -> str:
    """A chat, message or event id: ASCII letters, digits and ``._:@+=/~-``."""
    check_plain_text(value, limit=limit)
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidValue(
            f"{value[:40]!r} is not an identifier (letters, digits and ._:@+=/~- only)"
        )
    return value


def check_phone_number(value: str) -> str:
    """One of our lines: E.164."""
    check_plain_text(value, limit=32)
    if not E164.fullmatch(value):
        raise InvalidValue(f"{value[:40]!r} is not an E.164 phone number (+ then 8-15 digits)")
    return value


def check_handle(value: str) -> str:
    """A recipient: an E.164 number or an email address (the ledger lists them with commas)."""
    check_plain_text(value, limit=MAX_HANDLE_LENGTH)
    if "," in value:
        raise InvalidValue("a handle cannot contain a comma")
    if not (E164.fullmatch(value) or EMAIL.fullmatch(value)):
        raise InvalidValue(f"{value[:40]!r} is not an E.164 number or an email address")
    return value


def check_time_text(value: str, *, limit: int = 64) -> str:
    """The text of a timestamp before parsing: short, and no NUL or control characters.

    ``datetime.fromisoformat`` accepts a trailing NUL on Python 3.11; a time carrying control
    characters is not one Linq wrote.
    """
    return check_plain_text(value, limit=limit)


def check_signing_secret(secret: str) -> str:
    """A Standard Webhooks ``whsec_`` secret whose key decodes as base64."""
    if not secret.startswith(STANDARD_PREFIX):
        raise InvalidValue(f"a Standard Webhooks secret starts with {STANDARD_PREFIX}")
    key = secret[len(STANDARD_PREFIX) :]
    if not key:
        raise InvalidValue(f"the part after {STANDARD_PREFIX} is empty")
    try:
        # Strict: the standardwebhooks package's own decoding skips characters that are not
        # base64, so a mangled secret would verify nothing without saying why.
        base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"the part after {STANDARD_PREFIX} is not base64") from None
    return secret
