"""When a node's web process dies, the node reconnects to another instance; the attempts it held are settled
within seconds of that reconnection, not at the 30 s job timeout: a result sent over the new socket within
the grace ends the job DONE, and without one the attempt ends NODE_OFFLINE and the job goes elsewhere."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.support import AUDIO, capacity_in_use, ready_node, result_for
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}


async def reconnect_after_holder_dies(start_job_server, node_token, jobs_key, grace_s: str):
    """A job dispatched to a node on one instance, that instance SIGKILLed, the node registered again (same
    id) on a second one; returns (survivor, job id, the node's new wire, its id, the job_assign)."""
    settings = {"JOB_TIMEOUT_S": "30", "JOB_PENDING_TIMEOUT_S": "20", "NODE_RECONNECT_GRACE_S": grace_s}
    holder, survivor = start_job_server(**settings), start_job_server(**settings)
    wire, node_id = await ready_node(holder, node_token)
    async with httpx.AsyncClient(base_url=holder.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json=BODY)).json()["job_id"]
    assign = await wire.expect("job_assign")
    holder.kill()
    await wire.closed_with()
    again = await Wire.connect(survivor.ws_url, node_token)
    assert (await again.register(node_id=node_id))["node_id"] == node_id
    return survivor, job_id, again, node_id, assign


async def test_without_a_result_the_attempt_ends_node_offline_after_the_grace_and_runs_elsewhere(
    start_job_server, node_token, jobs_key
):
    survivor, job_id, again, node_id, _ = await reconnect_after_holder_dies(start_job_server, node_token, jobs_key, "1")
    other, other_id = await ready_node(survivor, node_token)

    # The job timeout (30 s) is far beyond this wait: only the reconnection's grace can end the attempt.
    assign = await other.expect("job_assign", timeout=10)
    await other.send(result_for(assign, other_id))
    async with httpx.AsyncClient(base_url=survivor.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()

    assert (assign["job_id"], assign["attempt_id"]) == (job_id, 2)
    assert job["state"] == "DONE"
    assert [(a["node_id"], a["state"], a["reason"]) for a in job["attempts"]] == [
        (node_id, "FAILED", "NODE_OFFLINE"),
        (other_id, "DONE", None),
    ]
    assert await capacity_in_use(node_id) == 0
    await again.close()
    await other.close()


async def test_a_result_sent_over_the_new_socket_within_the_grace_ends_the_job_done(start_job_server, node_token, jobs_key):
    survivor, job_id, again, node_id, assign = await reconnect_after_holder_dies(start_job_server, node_token, jobs_key, "20")

    await again.send(result_for(assign, node_id))
    async with httpx.AsyncClient(base_url=survivor.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()

    assert (job["state"], job["attempt_id"], job["node_id"]) == ("DONE", 1, node_id)
    assert await capacity_in_use(node_id) == 0
    await again.close()
