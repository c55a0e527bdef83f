"""Contention, with simulated nodes over real sockets and the REST load generator: capacity is never
exceeded, every job ends exactly once, and every slot is given back."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from core import audit
from core.redis import get_redis, keys
from jobs.loadgen import LoadConfig, run_load
from jobs.models import Job
from tests.jobs.support import ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(240)
async def test_eight_submitters_three_nodes_of_capacity_two_and_500_jobs(start_job_server, node_token, jobs_key):
    server = start_job_server(JOB_PENDING_TIMEOUT_S="30", LOG_LEVEL="WARNING")
    async with ready_fleet(
        server.ws_url, node_token, 3, max_concurrent_jobs=2, heartbeat_interval_s=5, processing_ms=20,
        processing_jitter_ms=10, seed=7,
    ) as fleet:  # fmt: skip
        report = await run_load(
            LoadConfig(api_key=jobs_key, url=server.url, count=500, concurrency=8, src_lang="en", tgt_lang="zh", wait_s=10)
        )

    assert report.terminal == {"DONE": 500}, report.format_text()
    assert max(node.peak_concurrency for node in fleet.nodes) <= 2
    assert sum(node.jobs_completed for node in fleet.nodes) == 500
    client = get_redis()
    for node in fleet.nodes:
        assert await client.zcard(keys().node_reservations(node.node_id)) == 0
        assert await client.zcard(keys().node_running(node.node_id)) == 0
    assert await client.zcard(keys().jobs_pending) == 0
    await database_sync_to_async(audit.drain)(max_batches=1000)
    rows = await database_sync_to_async(lambda: list(Job.objects.values_list("state", flat=True)))()
    assert len(rows) == 500 and set(rows) == {"DONE"}
