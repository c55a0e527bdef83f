"""A node whose attempt timed out takes no new job until it shows life: a job submitted meanwhile waits
instead of being dispatched to it, and the node's next heartbeat lets that job through."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import heartbeat_message
from tests.jobs.support import AUDIO, ready_node, result_for
from tests.support.metrics import parse

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}


async def test_a_node_whose_job_timed_out_gets_no_new_job_until_its_next_heartbeat(start_job_server, node_token, jobs_key):
    server = start_job_server(JOB_TIMEOUT_S="0.5", JOB_PENDING_TIMEOUT_S="20", JOB_MAX_ATTEMPTS="1")
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        first = (await api.post("/api/v1/jobs", json=BODY)).json()
        assert first["node_id"] == node_id
        # The node says nothing: the job timeout ends the attempt and the node is told to drop it.
        cancel = await wire.expect("job_cancel")
        assert (cancel["job_id"], cancel["reason"]) == (first["job_id"], "job_timeout")

        waiting = (await api.post("/api/v1/jobs", json=BODY)).json()
        stalled_view = await api.get("/metrics")

        await wire.send(heartbeat_message(node_id))
        assign = await wire.expect("job_assign", timeout=10)
        await wire.send(result_for(assign, node_id))
        done = (await api.get(f"/api/v1/jobs/{waiting['job_id']}", params={"wait": 5})).json()

    assert (waiting["state"], waiting["node_id"]) == ("SELECTING", None)
    refused = parse(stalled_view.text)[("scheduler_reservations_total", (("reason", "stalled"), ("result", "refused")))]
    assert refused >= 1
    assert assign["job_id"] == waiting["job_id"]
    assert (done["state"], done["node_id"]) == ("DONE", node_id)
    await wire.close()
