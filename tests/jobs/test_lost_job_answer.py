"""`GET /jobs/{id}` of an accepted job whose live state Redis lost gives a terminal answer (FAILED,
STATE_LOST) that the mirror then holds; a job that ended longer ago than the retention is answered from the
mirror; only a job neither knows is 404."""

from __future__ import annotations

import httpx
import pytest
from channels.db import database_sync_to_async

from core import audit
from core.redis import get_redis, keys
from jobs.models import Job
from tests.jobs.support import AUDIO, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_job_lost_with_redis_data_is_answered_failed_state_lost_and_the_mirror_agrees(server, jobs_key, redis_url):
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        # No node serves it: it waits in SELECTING, mirrored as such.
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        await database_sync_to_async(audit.drain)()
        assert (await database_sync_to_async(Job.objects.get)(job_id=job_id)).state == "SELECTING"
        await get_redis().flushall()

        first = await api.get(f"/api/v1/jobs/{job_id}")
        polled = await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 1})
        await database_sync_to_async(audit.drain)()
        row = await database_sync_to_async(Job.objects.get)(job_id=job_id)
        missing = await api.get("/api/v1/jobs/job-never-submitted")

    assert first.status_code == 200, first.text
    assert (first.json()["state"], first.json()["error"]["code"]) == ("FAILED", "STATE_LOST")
    # Seen once under PostgreSQL and daphne in CI: a 500 here, not reproduced since; the server's log says why.
    assert polled.status_code == 200, server.log_tail(80)
    assert polled.json()["state"] == "FAILED"
    assert (row.state, row.reason) == ("FAILED", "STATE_LOST")
    assert missing.status_code == 404


async def test_a_job_that_ended_past_the_retention_is_answered_from_the_mirror(server, node_token, jobs_key):
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        assert (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()["state"] == "DONE"
        await database_sync_to_async(audit.drain)()
        # What the retention's expiry does to the live keys.
        await get_redis().delete(keys().job(job_id))

        answer = await api.get(f"/api/v1/jobs/{job_id}")

    body = answer.json()
    assert answer.status_code == 200, answer.text
    assert (body["state"], body["node_id"], body["from_history"]) == ("DONE", node_id, True)
    assert [(a["attempt_id"], a["state"]) for a in body["attempts"]] == [(1, "DONE")]
    assert "result" not in body
    await wire.close()


async def test_a_retried_submission_after_a_redis_loss_answers_the_mirrored_job_instead_of_running_it_again(
    server, node_token, jobs_key
):
    """The client's retry, with the same Idempotency-Key, of a job created before Redis lost its data: the
    mirror knows the job, so it is answered FAILED STATE_LOST under its id and attempt 1 is not sent again."""
    headers = {"Authorization": f"Bearer {jobs_key}", "Idempotency-Key": "retry-after-wipe-1"}
    body = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as api:
        # No node yet: the job waits in SELECTING, mirrored as such.
        first = await api.post("/api/v1/jobs", json=body)
        job_id = first.json()["job_id"]
        await database_sync_to_async(audit.drain)()
        assert (await database_sync_to_async(Job.objects.get)(job_id=job_id)).state == "SELECTING"
        await get_redis().flushall()
        # A node is ready now: a job created again would go to it.
        wire, _ = await ready_node(server, node_token)

        again = await api.post("/api/v1/jobs", json=body)
        recreated = await get_redis().exists(keys().job(job_id))
        await database_sync_to_async(audit.drain)()
        row = await database_sync_to_async(Job.objects.get)(job_id=job_id)

    assert first.status_code == 202, first.text
    assert again.json()["job_id"] == job_id, again.text
    assert again.json()["state"] == "FAILED"
    assert recreated == 0
    with pytest.raises(AssertionError, match="no job_assign frame"):
        await wire.expect("job_assign", timeout=1.0)
    assert (row.state, row.reason) == ("FAILED", "STATE_LOST")
    await wire.close()
