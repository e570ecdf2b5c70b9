"""The peer: daily contact-card shares written on a procrastinate job queue, as a user
without share-scheduler would write them. Benchmark-only (``bench/peer_procrastinate.py``).

One ``share_contact_card`` job per due chat per day, deferred with a queueing lock
``share-{chat_id}-{day}`` (a second defer of the same chat that day, while the first waits,
is refused), run by a ``procrastinate worker`` process:

    PEER_DATABASE_URL=postgresql://... LINQ_API_BASE=http://.../api/partner LINQ_API_KEY=... \\
        python -m procrastinate --app=bench.peer_app.app worker --concurrency 16

The connection pool gets the daemon's default budget (``database.pool_size`` 10); the HTTP
client keeps as many connections as the worker runs jobs at once (``PEER_CONCURRENCY``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date

import httpx
from procrastinate import App, PsycopgConnector
from procrastinate.jobs import Job

POOL_SIZE = 10
TASK = "share_contact_card"

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get("PEER_DATABASE_URL", ""), min_size=1, max_size=POOL_SIZE
    )
)

_client: httpx.AsyncClient | None = None


def _linq() -> httpx.AsyncClient:
    """One client per worker process, made on the first job (the event loop runs by then)."""
    global _client
    if _client is None:
        connections = int(os.environ.get("PEER_CONCURRENCY", "16"))
        _client = httpx.AsyncClient(
            base_url=os.environ["LINQ_API_BASE"],
            headers={"Authorization": f"Bearer {os.environ['LINQ_API_KEY']}"},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=30,
        )
    return _client


# Retried as the daemon retries a call (4 tries), for 5xx answers and dropped connections.
@app.task(name=TASK, retry=3)
async def share_contact_card(chat_id: str) -> None:
    resp = await _linq().post(f"/v3/chats/{chat_id}/share_contact_card")
    resp.raise_for_status()


def share_jobs(chat_ids: Sequence[str], day: date) -> list[Job]:
    """Today's jobs for the due chats: one each, locked against a second one queued that day."""
    return [
        Job(
            id=None,
            queue="default",
            lock=None,
            queueing_lock=f"share-{chat_id}-{day.isoformat()}",
            task_name=TASK,
            task_kwargs={"chat_id": chat_id},
        )
        for chat_id in chat_ids
    ]
