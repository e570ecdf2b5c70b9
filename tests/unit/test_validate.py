"""One validation for every way in: webhook payloads, import rows, backfill and CLI arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.core.merge import merge_activity
from scheduler.core.status import ChatStatus
from scheduler.ingest.events import EventError, parse_event
from scheduler.ingest.importer import RowError, validate_row
from scheduler.validate import InvalidValue, check_handle, check_identifier
from tests.factories import EVENT_LINE as LINE
from tests.factories import EVENT_TIME as T0
from tests.factories import message_event

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HOSTILE_IDS = [
    "line\nbreak",
    "tab\there",
    "\u202echat",  # right-to-left override
    "chat\u200b1",  # zero-width space
    "chat\ufeff",  # byte order mark
    "<script>",
    "chat one",
    "x" * 129,
]


@pytest.mark.parametrize("chat_id", HOSTILE_IDS)
def test_a_hostile_chat_id_is_refused_by_the_webhook_and_the_import_alike(chat_id: str) -> None:
    payload = message_event("message.sent")
    payload["data"]["chat"]["id"] = chat_id
    with pytest.raises(EventError, match=r"data\.chat\.id") as from_webhook:
        parse_event(payload)
    with pytest.raises(RowError, match="chat_id") as from_import:
        validate_row({"chat_id": chat_id, "line": LINE}, 2, NOW)
    with pytest.raises(InvalidValue) as checked:
        check_identifier(chat_id)
    # The same reason whichever door it came through.
    assert str(checked.value) in str(from_webhook.value)
    assert str(checked.value) in str(from_import.value)


@pytest.mark.parametrize("field", ["event_id", "data.id"])
def test_hostile_event_and_message_ids_are_refused(field: str) -> None:
    payload = message_event("message.sent")
    payload["data"]["id"] = "msg-1"
    if field == "event_id":
        payload["event_id"] = "evt\u202e1"
    else:
        payload["data"]["id"] = "msg\n1"
    with pytest.raises(EventError, match=field.replace(".", r"\.")):
        parse_event(payload)


@pytest.mark.parametrize("handle", ["+1415555\u200b0199", "a@example.com\n", "<b>@x.io", "bob"])
def test_hostile_handles_are_refused_by_the_webhook_and_the_import_alike(handle: str) -> None:
    payload = message_event("message.received", direction="inbound")
    payload["data"]["sender_handle"]["handle"] = handle
    with pytest.raises(EventError, match=r"data\.sender_handle\.handle"):
        parse_event(payload)
    with pytest.raises(RowError, match="recipients"):
        validate_row({"chat_id": "c1", "line": LINE, "recipients": [handle]}, 2, NOW)
    with pytest.raises(InvalidValue):
        check_handle(handle)


@pytest.mark.parametrize(
    "stamp", ["2026-05-01T08:00:00\x00", "2026-05-01T08:00:00Z\x00", "2026-05-01\x1fT08:00"]
)
def test_times_with_nul_or_control_characters_are_refused(stamp: str) -> None:
    payload = message_event("message.sent")
    payload["data"]["sent_at"] = stamp
    with pytest.raises(EventError, match=r"data\.sent_at"):
        parse_event(payload)
    with pytest.raises(RowError, match="last_inbound_at"):
        validate_row({"chat_id": "c1", "line": LINE, "last_inbound_at": stamp}, 2, NOW)


def test_ordinary_ids_and_handles_still_pass() -> None:
    for value in ("chat-1", "3f2b8c1e-2d4a-4b7e-9a55-0c1d2e3f4a5b", "evt_01HZX", "msg.7:a"):
        assert check_identifier(value) == value
    for handle in ("+14155550100", "someone@example.com"):
        assert check_handle(handle) == handle


def _undated_opt_out(at: datetime) -> dict[str, Any]:
    """An outbound message whose chat says OPTED_OUT without health_status.updated_at."""
    payload = message_event("message.sent", sent_at=at, health="OPTED_OUT")
    payload["data"]["chat"]["health_status"].pop("updated_at", None)
    return payload


@pytest.mark.parametrize("later", [True, False])
def test_an_undated_opt_out_and_an_inbound_agree_in_either_order(later: bool) -> None:
    opt_out = parse_event(_undated_opt_out(T0)).activity
    inbound_at = T0 + (timedelta(hours=1) if later else -timedelta(hours=1))
    inbound = parse_event(
        message_event("message.received", direction="inbound", sent_at=inbound_at)
    ).activity
    assert opt_out is not None and inbound is not None
    start = merge_activity(None, parse_event(message_event("message.sent")).activity)  # type: ignore[arg-type]
    one = merge_activity(merge_activity(start, opt_out), inbound)
    other = merge_activity(merge_activity(start, inbound), opt_out)
    assert one.status == other.status
    # Ordered by the message times: a later inbound clears the opt-out, an earlier one does not.
    assert one.status == (ChatStatus.active if later else ChatStatus.opted_out)


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "show", "<script>"],
        ["chat", "pause", "chat\u202e1"],
        ["share", "now", "line\nbreak"],
        ["cards", "status", "--line", "+14155550100\n"],
    ],
)
def test_cli_arguments_are_checked_like_every_other_way_in(argv: list[str], tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from scheduler.cli.app import _register, app

    _register()
    ledger = tmp_path / "ledger.db"
    result = CliRunner().invoke(
        app, [*argv, "--database-url", f"sqlite:///{ledger}"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
    assert not ledger.exists()


def test_a_configured_line_with_a_trailing_newline_is_refused() -> None:
    from scheduler.config import parse_schedule
    from scheduler.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lines\.0\.number"):
        parse_schedule({"lines": [{"number": "+14155550100\n"}]}, "x.yaml")
