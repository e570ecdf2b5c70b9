"""A faithful local simulator of the Linq Partner API v3 (see linq-api.md and design.md).

``create_app(settings)`` is the ASGI app; ``serve(settings, host, port)`` runs it under uvicorn;
``scheduler.testing.running_simulator`` runs one on a free port for a test.
"""

from scheduler.sim.app import create_app
from scheduler.sim.server import SimServer, serve
from scheduler.sim.settings import SimSettings

__all__ = ["SimServer", "SimSettings", "create_app", "serve"]
