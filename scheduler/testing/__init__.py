"""Tools for testing against share-scheduler: a simulator on loopback, signed webhooks, events.

Run the Linq simulator on a free loopback port for the length of a ``with`` block, and drive
it through its ``/_sim`` control API::

    from scheduler.testing import running_simulator
    from scheduler.sim import SimSettings

    with running_simulator(SimSettings(activation_delay=0)) as sim:
        chat = sim.control().create_chat("+14155550100", ["+14155550199"])
        ...  # point the daemon's linq.base_url at sim.api_base, token sim.token
        assert sim.control().shares(chat["chat"]["id"])

Build a webhook event and sign it as Linq does, then post it to a daemon::

    from scheduler.testing import event_body, message_event, standard_headers

    body = event_body(message_event("message.sent", chat_id="chat-1"))
    httpx.post(url, content=body, headers=standard_headers(body, "whsec_..."))

:func:`legacy_headers` signs with the older ``X-Webhook-Signature`` scheme instead;
:func:`standard_delivery` and :func:`legacy_delivery` give body and headers at once, as
keyword arguments for ``httpx``'s ``post``.
Timestamps and default event times come from :func:`scheduler.clock.now`, so a test that
moves the clock file moves them too.
"""

from scheduler.testing.simulator import (
    AsyncSimControl,
    SimControl,
    SimControlError,
    SimHandle,
    running_simulator,
)
from scheduler.testing.webhooks import (
    event_body,
    legacy_delivery,
    legacy_headers,
    message_event,
    standard_delivery,
    standard_headers,
)

__all__ = [
    "AsyncSimControl",
    "SimControl",
    "SimControlError",
    "SimHandle",
    "event_body",
    "legacy_delivery",
    "legacy_headers",
    "message_event",
    "running_simulator",
    "standard_delivery",
    "standard_headers",
]
