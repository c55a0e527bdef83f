"""Jobs for a node on the HTTP link: job_assign is POSTed to its dispatch URL, the result comes back as a
message, and an unreachable dispatch URL is a dispatch failure retried elsewhere."""

from __future__ import annotations

import base64

import pytest
from django.test import AsyncClient

from access.models import Scope
from tests.api.conftest import DispatchReceiver, HttpNode, KeyClient

pytestmark = pytest.mark.django_db(transaction=True)

AUDIO = base64.b64encode(b"\x03\x00abc").decode()


async def test_an_http_node_gets_the_job_by_post_and_answers_through_the_link(http_node: HttpNode, receiver: DispatchReceiver, issue_key):
    node_id = await http_node.become_ready()
    api = KeyClient(await issue_key(Scope.JOBS_WRITE, Scope.JOBS_READ))
    answer = await api.post("/api/v1/jobs", {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, content_type="application/json")
    assert answer.status_code == 202, answer.content
    job_id = answer.json()["job_id"]

    assign = await receiver.wait_for(lambda frame: frame["type"] == "job_assign")
    assert (assign["job_id"], assign["attempt_id"]) == (job_id, 1)
    result = {
        "type": "job_result", "job_id": job_id, "attempt_id": 1, "node_id": node_id, "success": True,
        "text_asr": "hello", "text_translated": "你好", "trace_id": assign["trace_id"],
    }  # fmt: skip
    assert (await http_node.send(result)).status_code == 202
    job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["state"], job["result"]["text_translated"]) == ("DONE", "你好")


async def test_an_unreachable_dispatch_url_is_a_dispatch_failure_and_the_job_goes_to_another_node(
    node_token, receiver: DispatchReceiver, issue_key, settings
):
    settings.NODE_HTTP_DISPATCH_TIMEOUT_S = 0.5
    dead = HttpNode(AsyncClient(), node_token, "http://127.0.0.1:9/dispatch")
    alive = HttpNode(AsyncClient(), node_token, receiver.url)
    dead_id = await dead.become_ready()
    await alive.become_ready()
    api = KeyClient(await issue_key(Scope.JOBS_WRITE, Scope.JOBS_READ))
    for _ in range(4):  # whichever the random pick tries first, the job must end on the live node
        job_id = (await api.post("/api/v1/jobs", {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, content_type="application/json")).json()["job_id"]
        assign = await receiver.wait_for(lambda frame, job_id=job_id: frame.get("job_id") == job_id)
        job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["state"] == "DISPATCHED"
        assert job["tried_nodes"] in ([], [dead_id])
        assert assign["attempt_id"] == len(job["tried_nodes"]) + 1
