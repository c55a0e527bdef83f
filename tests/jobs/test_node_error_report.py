"""A node's own error report (`job_result` with `success: false` and `error{code, message, details}`) is kept
on the attempt, bounded in size, and shown by `GET /api/v1/jobs/{id}` and the admin job page."""

from __future__ import annotations

import json

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from core import audit
from jobs.models import JobAttempt
from jobs.outcomes import NODE_ERROR_DETAILS_MAX_BYTES, NODE_ERROR_MESSAGE_MAX
from nodes.simulator import MNA_REASON, NMT_SERVICE_ID
from tests.jobs.support import AUDIO, ready_fleet, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)


async def submit_and_wait(server, jobs_key: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=15) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
        return (await api.get(f"/api/v1/jobs/{answer.json()['job_id']}", params={"wait": 10})).json()


async def test_the_nodes_code_message_and_details_are_kept_on_the_attempt_and_shown_by_the_api_and_admin(
    start_job_server, node_token, jobs_key, admin_client: Client
) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="0.5")
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=0, model_not_available_rate=1.0) as fleet:
        job = await submit_and_wait(server, jobs_key)
    node_id = fleet.nodes[0].node_id
    [sent] = fleet.nodes[0].sent_of_type("job_result")

    first = job["attempts"][0]
    assert (first["node_id"], first["reason"]) == (node_id, "MODEL_NOT_AVAILABLE")
    assert first["node_error"] == sent["error"]
    assert first["node_error"]["details"] == {"service_id": NMT_SERVICE_ID, "service_version": "1.0", "reason": MNA_REASON}

    await database_sync_to_async(audit.drain)()
    stored = await JobAttempt.objects.aget(job_id=job["job_id"], attempt_id=1)
    assert stored.node_error == sent["error"]
    page = await database_sync_to_async(admin_client.get)(reverse("admin:jobs_job_change", args=[job["job_id"]]))
    html = page.content.decode()
    assert page.status_code == 200
    assert sent["error"]["message"] in html
    assert MNA_REASON in html


async def test_a_huge_error_report_is_cut_to_its_bounds(start_job_server, node_token, jobs_key) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="0.5")
    wire, node_id = await ready_node(server, node_token)
    headers = {"Authorization": f"Bearer {jobs_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=15) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
        job_id = answer.json()["job_id"]
        assign = await wire.expect("job_assign")
        error = {"code": "PROCESSING_ERROR", "message": "Traceback " * 5000, "details": {"stack": ["frame"] * 5000}}
        await wire.send(result_for(assign, node_id, success=False, error=error))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
    [attempt, *_] = job["attempts"]
    kept = attempt["node_error"]
    assert kept["code"] == "PROCESSING_ERROR"
    assert kept["message"] == error["message"][:NODE_ERROR_MESSAGE_MAX]
    assert kept["details"] == {"truncated": True, "bytes": len(json.dumps(error["details"]))}
    assert len(json.dumps(kept)) < NODE_ERROR_MESSAGE_MAX + NODE_ERROR_DETAILS_MAX_BYTES
    await wire.close()


async def test_the_details_come_back_exactly_as_the_node_sent_them(start_job_server, node_token, jobs_key) -> None:
    server = start_job_server(JOB_PENDING_TIMEOUT_S="0.5")
    wire, node_id = await ready_node(server, node_token)
    headers = {"Authorization": f"Bearer {jobs_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=15) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
        assign = await wire.expect("job_assign")
        error = {"code": "SEM_REPAIR_FAILED", "message": "语义修复失败", "details": {"tried": [], "gpu": {"free_mb": 0}, "note": None}}
        await wire.send(result_for(assign, node_id, success=False, error=error))
        job = (await api.get(f"/api/v1/jobs/{answer.json()['job_id']}", params={"wait": 10})).json()
    assert job["attempts"][0]["node_error"] == error
    assert "node_error" not in job["attempts"][1]
    await wire.close()
