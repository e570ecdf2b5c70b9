"""The ``share-scheduler`` command line."""

from scheduler.cli.app import main

__all__ = ["main"]
