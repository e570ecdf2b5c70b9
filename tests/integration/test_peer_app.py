"""The peer benchmark's procrastinate app on a real PostgreSQL: one job per chat and day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from procrastinate import PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued

from bench import peer_app
from bench.common import pg_database

pytestmark = pytest.mark.postgres

DAY = date(2026, 11, 29)


async def test_a_chat_gets_one_queued_job_per_day() -> None:
    with pg_database() as url:
        connector = PsycopgConnector(conninfo=url, min_size=1, max_size=1)
        with peer_app.app.replace_connector(connector) as app:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                jobs = await app.job_manager.batch_defer_jobs_async(
                    peer_app.share_jobs(["chat-a", "chat-b"], DAY)
                )
                assert [job.task_kwargs for job in jobs] == [
                    {"chat_id": "chat-a"},
                    {"chat_id": "chat-b"},
                ]
                with pytest.raises(AlreadyEnqueued):
                    await app.job_manager.defer_job_async(peer_app.share_jobs(["chat-a"], DAY)[0])
                # The next day's job is another one.
                tomorrow = peer_app.share_jobs(["chat-a"], DAY + timedelta(days=1))[0]
                assert (await app.job_manager.defer_job_async(tomorrow)).id is not None
