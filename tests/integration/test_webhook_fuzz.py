"""Fuzzing the webhook endpoint: hostile, broken and replayed requests against a real ledger.

Each hypothesis example sends a batch of generated requests through the Starlette app
(httpx.ASGITransport: an exception in the app fails the test). For every request the
expected answer is worked out independently, and the full ledger contents are read with a
separate database connection before and after each request that must not write: not one
write may come from a request that is not validly signed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from scheduler.config import Schedule, Secret, Secrets, WebhooksConfig
from scheduler.http.app import create_app
from scheduler.http.runtime import Runtime
from scheduler.ingest.events import KNOWN_EVENTS
from scheduler.ingest.signing import sign
from scheduler.ledger.engine import Ledger, create_engine
from scheduler.metrics import Metrics
from tests.factories import policy

SECRET = "whsec-fuzz-current-5b0e"
OLD_SECRET = "whsec-fuzz-previous-93a1"
MAX_BODY = 8192
TOLERANCE = 300
BATCH = 25
LINES = ["+14155550100", "+14155550111"]
CUSTOMERS = ["+12125550199", "+447700900123", "someone@example.com"]
CHAT_IDS = [f"chat-{i}" for i in range(6)]
TABLES = ("chats", "lines", "webhook_events", "share_attempts", "backfill_state")
SIGNED_KINDS = ("valid", "valid_old_secret", "valid_upper")

# -- the ledger, read from outside the app ---------------------------------------------------


def snapshotter(url: str) -> Callable[[], tuple[Any, ...]]:
    """Every row of every table, through a connection of its own."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None)

        def sqlite_dump() -> tuple[Any, ...]:
            return tuple(
                tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in TABLES
            )

        return sqlite_dump
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    pg = psycopg.connect(dsn, autocommit=True)

    def pg_dump() -> tuple[Any, ...]:
        return tuple(tuple(pg.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in TABLES)

    return pg_dump


# -- generated requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    expect: str  # "signed", or the exact status an unsigned request must get
    stamp: int = 0  # the signed timestamp


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


EVENT_TYPES = [
    "message.sent",
    "message.delivered",
    "message.received",
    "chat.created",
    "reaction.added",
    "contact_card.updated",
]
HEALTHS = ["HEALTHY", "HEALTHY", "OPTED_OUT"]
SERVICES = ["iMessage", "SMS", "RCS"]
MINUTES = 5 * 24 * 60


class Digits:
    """Reads mixed-radix digits off one hypothesis integer.

    Hypothesis's cost is per drawn choice, and 10,000 requests must run in well under a
    minute: one integer decides every small field of a request.
    """

    def __init__(self, value: int) -> None:
        self.value = value

    def take(self, radix: int) -> int:
        self.value, digit = divmod(self.value, radix)
        return digit

    def pick(self, items: list[Any]) -> Any:
        return items[self.take(len(items))]


SHAPE = st.integers(0, 2**64)


def event(shape: int, event_id: int) -> dict[str, Any]:
    """A plausible Linq event (both formats, some unknown types) over a few chats."""
    d = Digits(shape)
    now = datetime.now(UTC)
    at = now - timedelta(minutes=d.take(MINUTES))
    event_type = d.pick(EVENT_TYPES)
    chat_id = d.pick(CHAT_IDS)
    line = d.pick(LINES)
    customer = d.pick(CUSTOMERS)
    health = {"status": d.pick(HEALTHS)}
    if d.take(2):
        health["updated_at"] = iso(at)
    legacy = d.take(5) == 0
    reconciled = d.take(6) == 0
    data: dict[str, Any]
    if event_type == "chat.created":
        data = {
            "id": chat_id,
            "is_group": False,
            "service": d.pick(SERVICES),
            "handles": [
                {"handle": line, "is_me": True},
                {"handle": customer, "is_me": False},
            ],
            "health_status": health,
        }
    elif event_type.startswith("message.") and legacy:
        data = {
            "message": {
                "id": "m",
                "chat_id": chat_id,
                "is_from_me": event_type != "message.received",
                "from": line,
                "sent_at": iso(at),
                "service": "iMessage",
            }
        }
    elif event_type.startswith("message."):
        inbound = event_type == "message.received"
        data = {
            "id": "msg",
            "direction": "inbound" if inbound else "outbound",
            "service": "iMessage",
            "sent_at": iso(at),
            "chat": {
                "id": chat_id,
                "is_group": False,
                "owner_handle": {"handle": line, "is_me": True},
                "health_status": health,
            },
            "sender_handle": {"handle": customer if inbound else line},
            "parts": [{"type": "text", "value": "hi"}],
        }
        if reconciled:
            data["reconciled_at"] = iso(now)
    else:
        data = {"phone_number": line, "first_name": "Acme"}
    return {
        "api_version": "v3",
        "event_id": f"ev-{event_id}",
        "event_type": event_type,
        "created_at": iso(at),
        "webhook_version": "2026-02-03",
        "data": data,
    }


events = st.builds(event, SHAPE, st.integers(0, 2**40))

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["", "\x00", "\ud800", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]
    ),
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["event_id", "event_type", "data", "chat", "id", "sent_at", "handles", "message"]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=8,
)


@st.composite
def wrong_types(draw: st.DrawFn) -> dict[str, Any]:
    """A real event with one field replaced by a value of any shape."""
    d = Digits(draw(SHAPE))
    ev = event(d.take(2**48), d.take(2**40))
    target = ev if d.take(2) else ev["data"]
    key = sorted(target)[d.take(len(target))]
    target[key] = draw(_scalars if d.take(3) else _json_values)
    return ev


# Identifiers no door accepts: each makes a signed event a 400 that writes nothing.
HOSTILE_IDS = ["line\nbreak", "\u202eevil", "<script>", "chat\u200b0", "a b", "x" * 129]


@st.composite
def hostile_ids(draw: st.DrawFn) -> dict[str, Any]:
    """A signed-worthy message event whose chat id or event id is hostile."""
    d = Digits(draw(SHAPE))
    at = datetime.now(UTC) - timedelta(minutes=d.take(MINUTES))
    line = d.pick(LINES)
    hostile = d.pick(HOSTILE_IDS)
    ev: dict[str, Any] = {
        "api_version": "v3",
        "event_id": f"ev-hostile-{d.take(2**40)}",
        "event_type": "message.sent",
        "created_at": iso(at),
        "webhook_version": "2026-02-03",
        "data": {
            "id": "msg",
            "direction": "outbound",
            "service": "iMessage",
            "sent_at": iso(at),
            "chat": {
                "id": d.pick(CHAT_IDS),
                "is_group": False,
                "owner_handle": {"handle": line, "is_me": True},
                "health_status": {"status": "HEALTHY"},
            },
            "sender_handle": {"handle": line},
        },
    }
    if d.take(2):
        ev["event_id"] = hostile
    else:
        ev["data"]["chat"]["id"] = hostile
    return ev


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _dumps_raw(value: Any) -> bytes:
    # Non-ASCII as raw UTF-8; a lone surrogate makes the bytes invalid UTF-8.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _truncated(args: tuple[int, int]) -> bytes:
    body = _dumps(event(args[0], args[0] % 2**40))
    return body[: args[1] % (len(body) + 1)]


SPECIAL_BODIES = [
    b"",
    b"null",
    b"[]",
    b'{"event_id": 1e999}',
    b'{"n": ' + b"1" * 4400 + b"}",  # past the int digit limit, within MAX_BODY
    b"[" * 3000 + b"]" * 3000,
    b'{"event_id": "x\\u0000", "event_type": "message.sent"}',
    b'{"event_id": "\\ud800", "event_type": "message.sent"}',
    b"\xff\xfe{\x00}",
]

bodies = st.one_of(
    events.map(_dumps),
    events.map(_dumps),
    events.map(_dumps),
    wrong_types().map(_dumps),
    hostile_ids().map(_dumps),
    _json_values.map(_dumps_raw),
    st.tuples(SHAPE, SHAPE).map(_truncated),
    st.binary(max_size=200),
    st.integers(MAX_BODY - 100, MAX_BODY + 300).map(
        lambda n: b'{"event_id":"big","event_type":"noise","data":"' + b"a" * n + b'"}'
    ),
    st.sampled_from(SPECIAL_BODIES),
)

SIGNINGS = [
    *SIGNED_KINDS,
    *SIGNED_KINDS,
    "wrong_secret",
    "missing_sig",
    "missing_ts",
    "stale",
    "future",
    "garbage_ts",
    "unicode_ts",
    "truncated_sig",
    "random_sig",
    "tampered",
]
CONTENT_TYPES: list[bytes | None] = [
    *[b"application/json"] * 6,
    b"application/json; charset=utf-8",
    b"Application/JSON",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"",
    None,
    b"\xe9\x00json",
]
GARBAGE_TS = [b"", b"abc", b"-5", b"1e9", b"12345678901234", b" 17", b"+17"]
# Digits that str.isdigit() accepts but int() refuses, as a latin-1 header carries them.
UNICODE_TS = [b"\xb2", b"1\xb9\xb3", b"\xbd"]
EVENT_HEADERS = [b"message.sent", b"zz" * 40, b""]


def _ok_type(value: bytes | None) -> bool:
    if value is None:
        return False
    return value.decode("latin-1").split(";")[0].strip().lower() == "application/json"


@st.composite
def requests(draw: st.DrawFn) -> Req:
    body = draw(bodies)
    d = Digits(draw(SHAPE))
    kind = d.pick(SIGNINGS)
    content_type = d.pick(CONTENT_TYPES)
    now = int(time.time())
    ts = str(now + d.take(121) - 60).encode()
    secret = OLD_SECRET if kind == "valid_old_secret" else SECRET
    signed_body = body
    if kind == "wrong_secret":
        secret = "not-" + SECRET
    elif kind == "stale":
        ts = str(now - TOLERANCE - 60 - d.take(10**9)).encode()
    elif kind == "future":
        ts = str(now + TOLERANCE + 60 + d.take(10**9)).encode()
    elif kind == "tampered":
        signed_body = body + b" "
    signature = sign(secret, ts.decode(), signed_body).encode()
    if kind == "valid_upper":
        signature = signature.upper()
    elif kind == "garbage_ts":
        ts = d.pick(GARBAGE_TS)
    elif kind == "unicode_ts":
        ts = d.pick(UNICODE_TS)
    elif kind == "truncated_sig":
        signature = signature[: d.take(64)]
    elif kind == "random_sig":
        signature = bytes(d.take(256) for _ in range(d.take(80))).translate(None, b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if kind != "missing_ts":
        headers.append((b"x-webhook-timestamp", ts))
    if kind != "missing_sig":
        headers.append((b"x-webhook-signature", signature))
    headers.append((b"x-webhook-event", d.pick(EVENT_HEADERS)))
    if len(body) > MAX_BODY:
        expect = "413"
    elif not _ok_type(content_type):
        expect = "415"
    elif kind in SIGNED_KINDS:
        expect = "signed"
    else:
        expect = "401"
    return Req(body, tuple(headers), expect, int(ts) if ts.isdigit() else 0)


# A replay (an int) resends the n-th validly signed request seen so far, unchanged.
items = st.one_of(*[requests()] * 9, st.integers(0, 10**6))
batches = st.lists(items, min_size=BATCH, max_size=BATCH)


# -- the run ---------------------------------------------------------------------------------


async def _ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


class Fuzz:
    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.url = url
        self.snapshot = snapshotter(url)
        self.sent = 0
        self.results: Counter[str] = Counter()
        self.signed: list[Req] = []
        self.metrics = Metrics()

        async def setup() -> tuple[Ledger, httpx.AsyncClient]:
            ledger = Ledger(create_engine(url, pool_size=2))
            runtime = Runtime(
                schedule=Schedule(
                    webhooks=WebhooksConfig(
                        max_body_bytes=MAX_BODY, tolerance=timedelta(seconds=TOLERANCE)
                    )
                ),
                secrets=Secrets(
                    Secret("tok", "t"), [Secret(SECRET, "new"), Secret(OLD_SECRET, "old")]
                ),
                policy=policy(),
                ledger=ledger,
                metrics=self.metrics,
                readiness=_ready,
            )
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://daemon"
            )
            return ledger, client

        self.ledger, self.client = self.runner.run(setup())

    def close(self) -> None:
        async def teardown() -> None:
            await self.client.aclose()
            await self.ledger.dispose()

        self.runner.run(teardown())
        self.runner.close()

    async def _send(self, req: Req) -> httpx.Response:
        self.sent += 1
        return await self.client.post("/webhooks/linq", content=req.body, headers=list(req.headers))

    async def batch(self, items: list[Req | int]) -> None:
        before = self.snapshot()
        for item in items:
            replay = isinstance(item, int)
            if isinstance(item, int):
                if not self.signed:
                    continue
                req = self.signed[item % len(self.signed)]
                age = time.time() - req.stamp
                if abs(age - TOLERANCE) < 5:
                    continue  # too close to the tolerance to tell which answer is right
                if age > TOLERANCE:
                    # Replayed past the tolerance (hypothesis shrinking takes its time).
                    req = Req(req.body, req.headers, "401")
            else:
                req = item
            resp = await self._send(req)
            after = self.snapshot()
            status = resp.status_code
            assert status < 500, (status, resp.text, req)
            if req.expect != "signed":
                assert status == int(req.expect), (status, resp.text, req)
                assert after == before, f"an unsigned request ({req.expect}) wrote to the ledger"
                self.results[f"rejected_{status}"] += 1
                continue
            assert status in (200, 400), (status, resp.text, req)
            if _has_hostile_id(req.body):
                assert status == 400, (status, resp.text, req)
            if status == 400 and _is_json(req.body):
                # A bad field is named; "not valid JSON" is for bodies that are not.
                assert "not valid JSON" not in resp.text, (resp.text, req)
                assert "invalid event:" in resp.text or "nests too deeply" in resp.text
            if status == 400:
                assert after == before, "a request answered 400 wrote to the ledger"
                self.results["invalid_400"] += 1
                if _has_hostile_id(req.body):
                    self.results["hostile_id_400"] += 1
                continue
            result = resp.json()["result"]
            self.results[result] += 1
            if replay or result == "duplicate":
                assert result == "duplicate", (result, req)
                assert after == before, "a replayed event wrote to the ledger"
            else:
                self.signed.append(req)
            before = after


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def _has_hostile_id(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return False
    data = payload["data"]
    chat = data.get("chat") if isinstance(data.get("chat"), dict) else {}
    ids = [payload.get("event_id"), chat.get("id")]
    if payload.get("event_type") == "chat.created":
        ids.append(data.get("id"))
    return any(i in HOSTILE_IDS for i in ids)


def run_fuzz(url: str, examples: int) -> Fuzz:
    fuzz = Fuzz(url)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batches)
    def one_batch(items: list[Req | int]) -> None:
        fuzz.runner.run(fuzz.batch(items))

    try:
        one_batch()
    finally:
        fuzz.close()
    return fuzz


def _type_labels(metrics: Metrics) -> set[str]:
    labels = set()
    for family in metrics.webhook_events.collect():
        for sample in family.samples:
            labels.add(sample.labels["type"])
    return labels


def test_ten_thousand_hostile_requests_on_sqlite(sqlite_url: str) -> None:
    # A few batches more than 10,000 requests: replays before any signed request are skipped.
    fuzz = run_fuzz(sqlite_url, examples=10_250 // BATCH)
    assert fuzz.sent >= 10_000
    # The run exercised every kind of answer, and valid events did reach the ledger.
    assert fuzz.results["applied"] > 50
    assert fuzz.results["duplicate"] > 10
    assert fuzz.results["invalid_400"] > 50
    assert fuzz.results["hostile_id_400"] > 50
    for status in (401, 413, 415):
        assert fuzz.results[f"rejected_{status}"] > 10
    # Unsigned header values never become metric series of their own.
    assert _type_labels(fuzz.metrics) <= KNOWN_EVENTS | {"other"}


def test_hostile_requests_on_postgresql(pg_url: str) -> None:
    fuzz = run_fuzz(pg_url, examples=1_000 // BATCH)
    assert fuzz.sent >= 1_000
    assert fuzz.results["applied"] > 5
    assert fuzz.results["rejected_401"] > 5


async def test_declared_lengths_that_are_not_plain_numbers_are_refused(sqlite_url: str) -> None:
    """Raw ASGI, since HTTP clients set Content-Length themselves."""
    ledger = Ledger(create_engine(sqlite_url, pool_size=1))
    runtime = Runtime(
        schedule=Schedule(),
        secrets=Secrets(Secret("tok", "t"), [Secret(SECRET, "new")]),
        policy=policy(),
        ledger=ledger,
        metrics=Metrics(),
        readiness=_ready,
    )
    app = create_app(runtime)
    snapshot = snapshotter(sqlite_url)
    before = snapshot()
    for declared in (b"\xb2", b"9" * 5000, b"-1", b"1e3", b"99999999999999999999"):
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any], out: list[dict[str, Any]] = sent) -> None:
            out.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhooks/linq",
            "raw_path": b"/webhooks/linq",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", declared)],
            "server": ("test", 80),
            "client": ("test", 1234),
            "root_path": "",
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 413, declared
    assert snapshot() == before
    await ledger.dispose()
