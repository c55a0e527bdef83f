"""A job end to end: REST submit on a real server, a node over a real socket, the result back over REST."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from channels.db import database_sync_to_async

from tests.jobs.support import AUDIO, REQUIRED_ASSIGN_FIELDS, capacity_in_use, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)

async def test_a_job_goes_to_the_node_and_its_result_comes_back_done_with_capacity_back_to_zero(
    server, node_token, jobs_key
):
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        answer = await api.post("/api/v1/jobs", json={"src_lang": "zh", "tgt_lang": "en", "audio": AUDIO})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]

        assign = await wire.expect("job_assign")
        assert assign.keys() >= REQUIRED_ASSIGN_FIELDS
        assert (assign["job_id"], assign["attempt_id"], assign["audio"]) == (job_id, 1, AUDIO)
        assert assign["pipeline"] == {"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False}
        assert await capacity_in_use(node_id) == 1

        await wire.send(result_for(assign, node_id))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()
    assert job["state"] == "DONE"
    assert job["result"]["text_asr"] == "今天天气很好"
    assert job["result"]["text_translated"] == "The weather is nice today"
    assert job["result"]["tts_audio"]
    assert job["node_id"] == node_id
    assert await capacity_in_use(node_id) == 0
    await wire.close()


async def test_a_job_submitted_on_one_instance_completes_on_a_node_of_another(start_job_server, node_token, jobs_key):
    a, b = start_job_server(), start_job_server()
    wire, node_id = await ready_node(b, node_token)
    async with httpx.AsyncClient(base_url=a.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()
    assert job["state"] == "DONE"
    await wire.close()


async def test_a_node_that_never_answers_is_retried_on_another_node_then_the_job_fails_with_job_timeout(
    start_job_server, node_token, jobs_key
):
    server = start_job_server(JOB_TIMEOUT_S="0.6", JOB_PENDING_TIMEOUT_S="0.5")
    wires = [await ready_node(server, node_token) for _ in range(3)]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        started = asyncio.get_running_loop().time()
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
        elapsed = asyncio.get_running_loop().time() - started
    assert job["state"] == "FAILED"
    assert job["error"]["code"] == "JOB_TIMEOUT"
    assert sorted(job["tried_nodes"]) == sorted(node_id for _, node_id in wires)
    # The long-poll (wait=10) ended with the job: three 0.6 s job timeouts in a row, not the wait.
    assert elapsed < 10
    assigns = [w.frames for w, _ in wires]
    for (wire, node_id) in wires:
        got = [f for f in wire.frames if f["type"] == "job_assign"] or [await wire.expect("job_assign", timeout=0.1)]
        assert len(got) == 1
        # A late result of that old attempt changes nothing.
        await wire.send(result_for(got[0], node_id))
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        assert (await api.get(f"/api/v1/jobs/{job_id}")).json()["state"] == "FAILED"
    for _, node_id in wires:
        assert await capacity_in_use(node_id) == 0
    del assigns


async def test_a_job_for_languages_no_node_serves_fails_with_pool_empty_after_the_pending_timeout(
    start_job_server, node_token, jobs_key
):
    server = start_job_server(JOB_PENDING_TIMEOUT_S="0.5")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job = (await api.post("/api/v1/jobs", params={"wait": 5}, json={"src_lang": "de", "tgt_lang": "fr", "audio": AUDIO})).json()
    assert job["state"] == "FAILED"
    assert job["error"]["code"] == "POOL_EMPTY"


async def test_no_capacity_waits_for_the_pending_timeout_then_no_available_node(start_job_server, node_token, jobs_key):
    server = start_job_server(JOB_PENDING_TIMEOUT_S="0.8", JOB_TIMEOUT_S="5")
    wire, node_id = await ready_node(server, node_token, max_concurrent_jobs=1)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        first = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()
        second = (await api.post("/api/v1/jobs", params={"wait": 5}, json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()
        assert second["state"] == "FAILED"
        assert second["error"]["code"] == "NO_AVAILABLE_NODE"
        assert first["state"] == "DISPATCHED"
    await wire.close()


async def test_a_waiting_job_is_served_when_capacity_frees_in_arrival_order(start_job_server, node_token, jobs_key):
    server = start_job_server(JOB_PENDING_TIMEOUT_S="5", JOB_TIMEOUT_S="5")
    wire, node_id = await ready_node(server, node_token, max_concurrent_jobs=1)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        ids = []
        for _ in range(3):
            ids.append((await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"])
        served = []
        for _ in range(3):
            assign = await wire.expect("job_assign")
            served.append(assign["job_id"])
            await wire.send(result_for(assign, node_id))
        for job_id in ids:
            assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
    assert served == ids
    await wire.close()


async def test_the_same_idempotency_key_and_body_give_the_same_job_and_another_body_409(server, node_token, jobs_key):
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}", "Idempotency-Key": "k-1"}) as api:
        body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}
        first = await api.post("/api/v1/jobs", json=body)
        again = await api.post("/api/v1/jobs", json=body)
        other = await api.post("/api/v1/jobs", json={**body, "tgt_lang": "de"})
    assert first.json()["job_id"] == again.json()["job_id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


@pytest.mark.parametrize(
    ("body", "params", "status", "code"),
    [
        ({"src_lang": "xx", "tgt_lang": "en", "audio": AUDIO}, {}, 400, "UNKNOWN_LANGUAGE"),
        ({"src_lang": "en", "tgt_lang": "zh"}, {}, 400, "VALIDATION_ERROR"),
        ({"src_lang": "en", "tgt_lang": "zh", "audio": "%%%not base64"}, {}, 400, "INVALID_AUDIO"),
        ({"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, {"wait": "forever"}, 400, "INVALID_WAIT"),
        ({"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, "node_id": "node-NOPE0000"}, {}, 400, "UNKNOWN_NODE"),
    ],
    ids=["unknown language", "missing audio", "invalid base64", "invalid wait", "unknown pinned node"],
)
async def test_bad_inputs_each_get_their_own_code(server, jobs_key, body, params, status, code):
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        answer = await api.post("/api/v1/jobs", json=body, params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


async def test_audio_over_the_limit_is_413_and_an_unknown_job_404(start_job_server, jobs_key):
    server = start_job_server(JOB_MAX_AUDIO_BYTES="2048")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        big = base64.b64encode(b"x" * 3000).decode()
        answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": big})
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] in ("AUDIO_TOO_LARGE", "TOO_LARGE")
        missing = await api.get("/api/v1/jobs/job-doesnotexist")
    assert missing.status_code == 404


async def test_every_ended_job_has_one_row_and_one_attempt_row_per_attempt(server, node_token, jobs_key):
    from core import audit
    from jobs.models import Job

    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
    await database_sync_to_async(audit.drain)()
    row = await database_sync_to_async(lambda: Job.objects.prefetch_related("attempts").get(pk=job_id))()
    assert row.state == "DONE"
    assert [(a.attempt_id, a.state, a.node_id) for a in row.attempts.all()] == [(1, "DONE", node_id)]
    await wire.close()


async def test_cancel_frees_the_slot_and_tells_the_node(server, node_token, jobs_key):
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        assign = await wire.expect("job_assign")
        cancelled = (await api.post(f"/api/v1/jobs/{job_id}/cancel")).json()
        assert cancelled["state"] == "CANCELLED"
        assert (await wire.expect("job_cancel"))["job_id"] == job_id
        assert await capacity_in_use(node_id) == 0
        await wire.send(result_for(assign, node_id))  # too late: changes nothing
        await asyncio.sleep(0.2)
        assert (await api.get(f"/api/v1/jobs/{job_id}")).json()["state"] == "CANCELLED"
    await wire.close()


async def test_a_node_that_arrives_within_the_pending_window_serves_the_waiting_jobs_in_arrival_order(
    start_job_server, node_token, jobs_key
):
    server = start_job_server(JOB_PENDING_TIMEOUT_S="10")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        ids = []
        for _ in range(3):
            ids.append((await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"])
        await asyncio.sleep(0.3)
        assert {(await api.get(f"/api/v1/jobs/{i}")).json()["state"] for i in ids} == {"SELECTING"}
        wire, node_id = await ready_node(server, node_token, max_concurrent_jobs=1)
        served = []
        for _ in range(3):
            assign = await wire.expect("job_assign")
            served.append(assign["job_id"])
            await wire.send(result_for(assign, node_id))
        assert served == ids
        for job_id in ids:
            assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
    await wire.close()


async def test_the_job_lists_its_attempts_with_node_state_reason_and_times(start_job_server, node_token, jobs_key):
    server = start_job_server(JOB_TIMEOUT_S="0.5")
    nodes = [await ready_node(server, node_token) for _ in range(2)]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        second = None
        while second is None:
            for wire, node_id in nodes:
                frames = [f for f in wire.frames if f["type"] == "job_assign" and f["attempt_id"] == 2]
                if not frames:
                    try:
                        frame = await wire.expect("job_assign", timeout=0.05)
                    except AssertionError:
                        continue
                    frames = [frame] if frame["attempt_id"] == 2 else []
                if frames:
                    second = (wire, node_id, frames[0])
        wire, node_id, assign = second
        await wire.send(result_for(assign, node_id))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()
    first, last = job["attempts"]
    assert (first["attempt_id"], first["state"], first["reason"]) == (1, "FAILED", "JOB_TIMEOUT")
    assert first["node_id"] != node_id and first["started_at"] and first["ended_at"]
    assert (last["attempt_id"], last["state"], last["node_id"]) == (2, "DONE", node_id)
    assert last["started_at"] <= last["ended_at"]
