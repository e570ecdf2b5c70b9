"""``share-scheduler demo``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def demo(
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="Stop once every eligible chat is shared.")
    ] = False,
    chats_per_line: Annotated[int, typer.Option("--chats-per-line", min=1, max=500)] = 10,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary folder.")] = False,
) -> None:
    """Run the simulator and the daemon on SQLite, make traffic, and watch the shares."""
    from scheduler.demo.runner import run_demo

    sys.exit(run_demo(exit_when_done=exit_when_done, chats_per_line=chats_per_line, keep=keep))
