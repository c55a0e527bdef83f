"""Redis killed mid-run: the API answers 503 and no process dies; back empty, jobs flow again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.factories import heartbeat_message
from tests.jobs.support import AUDIO, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as redis:
        point_at_redis(settings, redis.url)
        yield redis


async def test_jobs_answer_503_while_redis_is_down_and_succeed_again_after_it_returns_empty(
    own_redis, start_job_server, node_token, jobs_key
):
    server = start_job_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5")
    wire, node_id = await ready_node(server, node_token)
    body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=10) as api:
        own_redis.kill()
        down = await api.post("/api/v1/jobs", json=body)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "DEPENDENCY_DOWN"
        assert down.headers["Retry-After"]
        assert server.is_running()

        own_redis.restart()  # empty
        await wire.send(heartbeat_message(node_id))  # the node's next heartbeat re-registers it
        await wire.expect("node_status")
        submitted = await api.post("/api/v1/jobs", json=body)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        answer = await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})
        assert answer.json().get("state") == "DONE", answer.text
    await wire.close()


@pytest.mark.timeout(120)
async def test_redis_killed_under_load_gives_503s_and_jobs_flow_again_within_a_heartbeat_after_an_empty_restart(
    own_redis, start_job_server, node_token, jobs_key
):
    from jobs.loadgen import LoadConfig, run_load
    from nodes.simulator import Fleet, SimulatedNodeConfig

    server = start_job_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5", LOG_LEVEL="ERROR")
    base = SimulatedNodeConfig(
        url=f"{server.ws_url}/ws/node", token=node_token, heartbeat_interval_s=0.5, processing_ms=50, seed=5
    )
    fleet = Fleet.uniform(3, base)
    await fleet.start()
    try:
        await fleet.wait_until_registered(timeout=10)
        await fleet.wait_until_status("ready", timeout=10)
        load = asyncio.create_task(
            run_load(LoadConfig(api_key=jobs_key, url=server.url, count=300, concurrency=4, src_lang="en",
                                tgt_lang="zh", wait_s=2, job_timeout_s=10, post_retries=0))
        )  # fmt: skip
        await asyncio.sleep(1.0)
        own_redis.kill()
        await asyncio.sleep(1.0)
        own_redis.restart()  # empty
        during = await load
        assert during.http_errors[503] > 0, during.format_text()
        assert server.is_running()

        # Within one heartbeat interval (0.5 s) the nodes are back; new jobs then succeed.
        await asyncio.sleep(0.6)
        after = await run_load(
            LoadConfig(api_key=jobs_key, url=server.url, count=20, concurrency=4, src_lang="en", tgt_lang="zh", wait_s=5)
        )
    finally:
        await fleet.stop()
    assert after.terminal == {"DONE": 20}, after.format_text()
    assert not after.http_errors
