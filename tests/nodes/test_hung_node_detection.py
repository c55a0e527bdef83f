"""A hung node is found by the transport's keepalive, under uvicorn and daphne alike: a frozen node process
stops answering WebSocket pings, the server closes its socket, the node goes offline and its job goes to
another node long before the job timeout (30 s) or the heartbeat timeout (60 s here)."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from access.models import ApiKey, Scope
from tests.jobs.support import AUDIO, ready_node, result_for
from tests.support import node_process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ops_key(transactional_db) -> str:
    return ApiKey.issue("ops", [Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.NODES_READ])[1]


@pytest.mark.parametrize("web_server", ["uvicorn", "daphne"])
async def test_a_frozen_node_goes_offline_by_ping_and_its_job_is_retried_elsewhere_before_the_job_timeout(
    start_server, node_token, ops_key, web_server
):
    key = ops_key
    server = start_server(
        server=web_server, WS_PING_INTERVAL_S="1", WS_PING_TIMEOUT_S="1", NODE_HEARTBEAT_TIMEOUT_S="60",
        NODE_WARMUP_TIMEOUT_S="60", JOB_TIMEOUT_S="30", JOB_PENDING_TIMEOUT_S="20",
    )  # fmt: skip
    frozen, frozen_id = node_process.start(server.ws_url, node_token)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
            submitted = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()
            assert (submitted["state"], submitted["node_id"]) == ("DISPATCHED", frozen_id)
            os.killpg(frozen.pid, signal.SIGSTOP)
            wire, healthy_id = await ready_node(server, node_token)

            # The heartbeat timeout (60 s) and the job timeout (30 s) are both far beyond this wait.
            assign = await wire.expect("job_assign", timeout=15)
            await wire.send(result_for(assign, healthy_id))
            job = (await api.get(f"/api/v1/jobs/{submitted['job_id']}", params={"wait": 5})).json()
            frozen_view = (await api.get(f"/api/v1/nodes/{frozen_id}")).json()
    finally:
        os.killpg(frozen.pid, signal.SIGKILL)
        frozen.wait()

    assert assign["job_id"] == submitted["job_id"]
    assert job["state"] == "DONE"
    assert [(a["node_id"], a["state"], a["reason"]) for a in job["attempts"]] == [
        (frozen_id, "FAILED", "NODE_OFFLINE"),
        (healthy_id, "DONE", None),
    ]
    assert frozen_view["status"] == "offline"
    await wire.close()
