"""The peer benchmark's exactly-once check, against the real simulator process."""

from __future__ import annotations

import httpx
import pytest

from bench.common import TOKEN, seed, share_log, simulator

pytestmark = pytest.mark.e2e


def share(api_base: str, chat_id: str) -> int:
    resp = httpx.post(
        f"{api_base}/v3/chats/{chat_id}/share_contact_card",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return resp.status_code


def test_each_chat_shared_once_passes() -> None:
    with simulator() as sim:
        chats = seed(sim, 3)
        for chat_id in chats:
            assert share(sim.api_base, chat_id) == 200
        log = share_log(sim, chats)
        log.check_once("contender")
    assert log.calls == 3 and log.span_seconds > 0


def test_a_chat_called_twice_fails_the_run() -> None:
    # The simulator refuses a second share within 5 minutes (429), so its shares log holds
    # one share; the second call is the contender's attempt to share the chat again.
    with simulator() as sim:
        chats = seed(sim, 2)
        for chat_id in (*chats, chats[0]):
            share(sim.api_base, chat_id)
        with pytest.raises(SystemExit, match="1 chats called more than once"):
            share_log(sim, chats).check_once("contender")


def test_a_chat_never_shared_fails_the_run() -> None:
    with simulator() as sim:
        chats = seed(sim, 2)
        assert share(sim.api_base, chats[0]) == 200
        with pytest.raises(SystemExit, match="1 never shared"):
            share_log(sim, chats).check_once("contender")
