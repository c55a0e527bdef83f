"""Jobs under load across two instances: submitted on one, run by nodes connected to the other, answered at
once. A node's answer can then reach its instance before the dispatching instance has taken its next step;
no answer may be lost to that race, and every long-poll must see its job end."""

from __future__ import annotations

import asyncio

import pytest
import redis

from core.redis import keys
from jobs.loadgen import LoadConfig, run_load
from tests.jobs.support import ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = 240


async def test_instant_answers_through_another_instance_all_complete_on_their_first_attempt(
    start_job_server, node_token, jobs_key, redis_url
):
    # A lost answer would show as a job timeout and a second attempt.
    a, b = start_job_server(JOB_TIMEOUT_S="3"), start_job_server(JOB_TIMEOUT_S="3")
    async with ready_fleet(b.ws_url, node_token, 4, processing_ms=0, max_concurrent_jobs=4, heartbeat_interval_s=5, seed=7):
        report = await run_load(
            LoadConfig(api_key=jobs_key, url=a.url, count=JOBS, concurrency=12, src_lang="en", tgt_lang="zh",
                       wait_s=10, job_timeout_s=20, seed=7)
        )  # fmt: skip
    assert report.terminal["DONE"] == JOBS, report.format_text()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    attempts = [client.hget(keys().job(record.job_id), "attempt_id") for record in report.records]
    # One attempt each under a 3 s job timeout: no answer was lost between the instances.
    assert attempts == ["1"] * JOBS


async def test_an_idle_instance_keeps_listening_to_the_channel_layer_without_errors(
    start_job_server, node_token, jobs_key
):
    """The channel layer waits with a 5 s blocking pop. With redis-py's default 5 s read timeout every idle
    wait ended in a TimeoutError: a warning, an error count and a reconnect per process every 5 s."""
    a, b = start_job_server(), start_job_server()
    async with ready_fleet(b.ws_url, node_token, 1, processing_ms=0, heartbeat_interval_s=5, seed=3):
        await asyncio.sleep(6.5)  # more than one blocking pop with nothing to receive
        report = await run_load(
            LoadConfig(api_key=jobs_key, url=a.url, count=3, concurrency=1, src_lang="en", tgt_lang="zh", wait_s=5)
        )
    assert report.terminal["DONE"] == 3, report.format_text()
    for server in (a, b):
        assert "channel layer receive failed" not in server.log_text()
