"""The SQLite ledger's owner lock: held for the block, refused to a second holder, and none
for PostgreSQL (replicas share it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler.errors import LedgerInUse
from scheduler.ledger.owner import lock_path, own_ledger, sqlite_path


def test_a_second_owner_is_refused_with_the_holders_pid_until_the_first_lets_go(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with own_ledger(url) as held:
        assert held == lock_path(tmp_path / "ledger.db")
        second = own_ledger(url)
        with pytest.raises(LedgerInUse, match=rf"pid {os.getpid()}.*PostgreSQL") as caught:
            second.__enter__()
        assert caught.value.exit_code == 4
    with own_ledger(url) as again:
        assert again is not None


def test_postgresql_and_in_memory_ledgers_take_no_lock() -> None:
    assert sqlite_path("postgresql://postgres@127.0.0.1:5432/ledger") is None
    assert sqlite_path("sqlite:///:memory:") is None
    with own_ledger("postgresql://postgres@127.0.0.1:5432/ledger") as held:
        assert held is None
