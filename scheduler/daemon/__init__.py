"""The daemon: APScheduler jobs and the HTTP server in one asyncio process.

- :mod:`~scheduler.daemon.settings` holds the schedule in force and reloads it on SIGHUP;
- :mod:`~scheduler.daemon.jobs` is the job table (share pass, card check, pruning...);
- :mod:`~scheduler.daemon.health` is the token, ledger and scheduler health ``/readyz`` reads;
- :mod:`~scheduler.daemon.server` binds, starts and stops the HTTP side;
- :mod:`~scheduler.daemon.lifecycle` runs it all and shuts it down.
"""

from scheduler.daemon.lifecycle import Daemon, default_instance_id, run_daemon
from scheduler.daemon.server import listen_socket, server_limits
from scheduler.daemon.settings import restart_required

__all__ = [
    "Daemon",
    "default_instance_id",
    "listen_socket",
    "restart_required",
    "run_daemon",
    "server_limits",
]
