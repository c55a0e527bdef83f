"""The audit trail with the real writer: a Celery worker and beat move ended jobs into the database."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from jobs.loadgen import LoadConfig, run_load
from jobs.models import Job, JobAttempt
from tests.jobs.support import ready_fleet
from tests.support.processes import CeleryProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(120)
async def test_every_ended_job_has_its_rows_within_five_seconds(start_job_server, server_env, node_token, jobs_key):
    server = start_job_server(LOG_LEVEL="WARNING")
    env = {**server_env, "POOL_LEADER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    with CeleryProcess(env=env, kind="worker"), CeleryProcess(env=env, kind="beat"):
        async with ready_fleet(server.ws_url, node_token, 2, heartbeat_interval_s=5, processing_ms=10, seed=3):
            report = await run_load(
                LoadConfig(api_key=jobs_key, url=server.url, count=40, concurrency=4, src_lang="en", tgt_lang="zh", wait_s=10)
            )
        ended_at = time.monotonic()
        assert report.terminal == {"DONE": 40}

        def counts() -> tuple[int, int]:
            return Job.objects.filter(state="DONE").count(), JobAttempt.objects.filter(state="DONE").count()

        while await database_sync_to_async(counts)() != (40, 40):
            assert time.monotonic() - ended_at < 5, await database_sync_to_async(counts)()
            await asyncio.sleep(0.2)
    assert await database_sync_to_async(lambda: Job.objects.count())() == 40
