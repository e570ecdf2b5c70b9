"""What the daemon loads: ``share-scheduler run`` imports the daemon and what a pass needs,
none of the other commands' code, and only the ledger dialect of its own database.

Each check runs in a fresh interpreter: this one has every module loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import scheduler

PACKAGE_ROOT = Path(scheduler.__file__).parent.parent

# Loaded by commands other than ``run``, or by libraries for features the daemon never uses.
NOT_IN_THE_DAEMON = (
    "alembic",
    "rich",
    "pygments",
    "scheduler.cli.common",
    "scheduler.cli.context",
    "scheduler.cli.db_cmd",
    "scheduler.cli.sim_cmd",
    "scheduler.sim",
    "scheduler.demo",
    "scheduler.doctor",
    "scheduler.plan",
    "scheduler.core.forecast",
    "scheduler.ingest.importer",
    "scheduler.ingest.subscriptions",
    "scheduler.ledger.export",
    "scheduler.share.manual",
    # Only `sharing.timezone: recipient` needs it (the default zone is UTC).
    "phonenumbers",
)


def modules_after(script: str) -> set[str]:
    """The modules loaded once ``script`` has run (it may exit), in a fresh interpreter."""
    wrapped = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n" + script
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapped],
        capture_output=True,
        text=True,
        check=False,
        cwd=PACKAGE_ROOT,
    )
    assert result.stdout.strip(), result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_run_loads_the_daemon_and_no_other_command(tmp_path: Path) -> None:
    # The schedule file is missing: the command has imported the daemon when it finds out.
    missing = tmp_path / "schedule.yaml"
    modules = modules_after(
        "import sys\n"
        f"sys.argv = ['share-scheduler', 'run', '--config', {str(missing)!r}]\n"
        "from scheduler.cli import main\n"
        "main()\n"
    )
    # The check is of the real start path: the daemon and the libraries it runs on are there.
    for needed in (
        "scheduler.daemon.lifecycle",
        "scheduler.share.share_pass",
        "structlog",
        "httpx",
        "uvicorn",
    ):
        assert needed in modules, needed
    present = [name for name in NOT_IN_THE_DAEMON if loaded(modules, name)]
    assert present == [], present


def test_other_commands_still_find_rich_after_the_daemon_modules() -> None:
    # rich is hidden from structlog and httpx while they load, not from the process.
    modules = modules_after(
        "from scheduler.cli.run_cmd import _import_without_unused_extras\n"
        "_import_without_unused_extras()\n"
        "import rich.table\n"
    )
    assert {"structlog", "httpx", "rich.table"} <= modules


def test_a_ledger_loads_only_its_own_database_dialect() -> None:
    modules = modules_after(
        "from scheduler.ledger.dialects import dialect_named\n"
        "import scheduler.ledger.claims, scheduler.ledger.dialect\n"
        "assert dialect_named('sqlite').name == 'sqlite'\n"
    )
    assert "scheduler.ledger.dialects.sqlite" in modules
    assert not loaded(modules, "scheduler.ledger.dialects.postgres")
    assert not loaded(modules, "sqlalchemy.dialects.postgresql")
    modules = modules_after(
        "from scheduler.ledger.dialects import dialect_named\n"
        "assert dialect_named('postgresql').name == 'postgresql'\n"
    )
    assert "scheduler.ledger.dialects.postgres" in modules
    assert not loaded(modules, "scheduler.ledger.dialects.sqlite")
