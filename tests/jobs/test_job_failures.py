"""Jobs when nodes fail them: ack timeouts, model-not-available, a dead instance, stale messages."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.redis import get_redis, keys
from tests.jobs.support import AUDIO, capacity_in_use, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)


async def submit(api: httpx.AsyncClient, **extra) -> str:
    answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, **extra})
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


async def test_nodes_that_never_ack_are_retried_within_the_ack_timeout_and_the_job_fails_with_ack_timeout(
    start_job_server, node_token, jobs_key
):
    server = start_job_server(JOB_ACK_TIMEOUT_S="0.4", JOB_PENDING_TIMEOUT_S="0.3")
    wires = [await ready_node(server, node_token, supports_job_ack=True) for _ in range(3)]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        started = asyncio.get_running_loop().time()
        job_id = await submit(api)
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
        elapsed = asyncio.get_running_loop().time() - started
    assert job["state"] == "FAILED"
    assert job["error"]["code"] == "ACK_TIMEOUT"
    assert len(job["tried_nodes"]) == 3
    # Three attempts ended by the 0.4 s ack timeout, not by the job timeout (30 s each by default).
    assert [attempt["reason"] for attempt in job["attempts"]] == ["ACK_TIMEOUT"] * 3
    assert elapsed < 30
    for wire, _ in wires:
        assert (await wire.expect("job_cancel"))["reason"] == "ack_timeout"


async def first_assign(nodes: list[tuple], timeout: float = 2.0) -> tuple:
    """(wire, node_id, job_assign) of whichever node gets the next job_assign."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for wire, node_id in nodes:
            try:
                return wire, node_id, await wire.expect("job_assign", timeout=0.05)
            except AssertionError:
                continue
    raise AssertionError("no node got a job_assign")


async def test_an_acked_job_gets_only_the_job_timeout_and_a_late_ack_of_an_old_attempt_changes_nothing(
    start_job_server, node_token, jobs_key
):
    server = start_job_server(JOB_ACK_TIMEOUT_S="0.4", JOB_TIMEOUT_S="2")
    nodes = [await ready_node(server, node_token, supports_job_ack=True) for _ in range(2)]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = await submit(api)
        silent, silent_id, first = await first_assign(nodes)  # stays silent past the ack timeout
        other, other_id, second = await first_assign([n for n in nodes if n[1] != silent_id])
        assert (first["attempt_id"], second["attempt_id"]) == (1, 2)

        await silent.send({"type": "job_ack", "job_id": job_id, "attempt_id": 1, "node_id": silent_id})  # too late
        await other.send({"type": "job_ack", "job_id": job_id, "attempt_id": 2, "node_id": other_id})
        await asyncio.sleep(0.8)  # past the ack timeout again: acked, so no retry
        job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        assert (job["state"], job["attempt_id"], job["node_id"]) == ("ACKED", 2, other_id)

        await silent.send(result_for(first, silent_id))  # a result of the old attempt
        await asyncio.sleep(0.2)
        assert (await api.get(f"/api/v1/jobs/{job_id}")).json()["state"] == "ACKED"
        await other.send(result_for(second, other_id))
        assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
    assert await capacity_in_use(silent_id) == 0
    assert await capacity_in_use(other_id) == 0


async def test_model_not_available_marks_the_service_and_retries_on_another_node(start_job_server, node_token, jobs_key):
    server = start_job_server()
    nodes = [await ready_node(server, node_token) for _ in range(2)]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = await submit(api)
        wire, refused, assign = await first_assign(nodes)
        error = {
            "code": "MODEL_NOT_AVAILABLE",
            "message": "Service nmt-m2m100@1.0 is not available: not_installed",
            "details": {"service_id": "nmt-m2m100", "service_version": "1.0", "reason": "not_installed"},
        }
        await wire.send(result_for(assign, refused, success=False, error=error))
        wire, served, assign = await first_assign([n for n in nodes if n[1] != refused])
        assert assign["attempt_id"] == 2
        await wire.send(result_for(assign, served))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()
    assert job["state"] == "DONE"
    assert job["tried_nodes"] == [refused]
    unavailable = await get_redis().hgetall(keys().node_unavailable(refused))
    assert set(unavailable) == {"nmt"}


async def test_a_job_whose_instance_was_killed_still_ends_through_another_instances_sweeper(
    start_job_server, node_token, jobs_key
):
    holder = start_job_server(NODE_HEARTBEAT_TIMEOUT_S="1.5", JOB_PENDING_TIMEOUT_S="0.5", JOB_TIMEOUT_S="30")
    survivor = start_job_server(NODE_HEARTBEAT_TIMEOUT_S="1.5", JOB_PENDING_TIMEOUT_S="0.5", JOB_TIMEOUT_S="30")
    wire, node_id = await ready_node(holder, node_token)
    async with httpx.AsyncClient(base_url=holder.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = await submit(api)
    await wire.expect("job_assign")
    holder.kill()
    async with httpx.AsyncClient(base_url=survivor.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 8})).json()
    assert job["state"] == "FAILED"
    assert job["tried_nodes"] == [node_id]
    assert await capacity_in_use(node_id) == 0
