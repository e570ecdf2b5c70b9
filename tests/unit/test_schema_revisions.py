"""The schema's revisions, read without Alembic when the migrations form one line, agree with
Alembic's own reading; checking a ledger's schema (as the daemon does at start) loads no
Alembic."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from scheduler.ledger import schema


def alembic_head_and_known() -> tuple[str | None, set[str]]:
    script = ScriptDirectory.from_config(schema.alembic_config())
    return script.get_current_head(), {rev.revision for rev in script.walk_revisions()}


def test_the_shipped_migrations_read_as_alembic_reads_them() -> None:
    head, known = alembic_head_and_known()
    assert schema.head_revision() == head
    assert schema.known_revisions() == known
    assert len(known) >= 2


def copy_of_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "migrations"
    shutil.copytree(schema.migrations_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(schema.MIGRATIONS_ENV, str(copy))
    return copy / "versions"


def add_revision(versions: Path, revision: str, down_revision: str) -> None:
    (versions / f"{revision}_extra.py").write_text(
        textwrap.dedent(
            f"""
            revision = "{revision}"
            down_revision = {down_revision}
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                pass


            def downgrade() -> None:
                pass
            """
        )
    )


def test_a_new_revision_on_the_line_is_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_head = schema.head_revision()
    add_revision(copy_of_migrations(tmp_path, monkeypatch), "9001", f'"{old_head}"')
    assert schema.head_revision() == "9001" == alembic_head_and_known()[0]
    assert schema.known_revisions() == alembic_head_and_known()[1]


def test_a_merge_of_two_branches_is_read_by_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_head = schema.head_revision()
    versions = copy_of_migrations(tmp_path, monkeypatch)
    add_revision(versions, "9001", f'"{old_head}"')
    add_revision(versions, "9002", f'"{old_head}"')
    add_revision(versions, "9003", '("9001", "9002")')
    assert schema.head_revision() == "9003" == alembic_head_and_known()[0]
    assert schema.known_revisions() == alembic_head_and_known()[1]


def test_two_heads_are_refused_as_alembic_refuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_head = schema.head_revision()
    versions = copy_of_migrations(tmp_path, monkeypatch)
    add_revision(versions, "9001", f'"{old_head}"')
    add_revision(versions, "9002", f'"{old_head}"')
    with pytest.raises(Exception, match="multiple heads"):
        schema.head_revision()


def test_checking_a_ledger_schema_loads_no_alembic(sqlite_url: str) -> None:
    check = textwrap.dedent(
        f"""
        import asyncio, sys
        import scheduler.daemon
        from scheduler.ledger import schema
        from scheduler.ledger.engine import Ledger, create_engine

        async def main():
            ledger = Ledger(create_engine({sqlite_url!r}, pool_size=1))
            await schema.ensure_current(ledger)
            assert await schema.current_revision(ledger) == schema.head_revision()
            await ledger.dispose()

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "mako"))
        print(loaded)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
