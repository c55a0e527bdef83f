"""The process that ends a job hands the ended job to its own waiters: the script that makes the job DONE
returns the job hash (job_step.lua, argument 8), so a `?wait` answer costs no read of its own. The answer
must be exactly what a read from Redis gives, and waiters on another instance still get theirs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.jobs.support import AUDIO, ready_fleet

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"src_lang": "zh", "tgt_lang": "en", "audio": AUDIO}


async def test_the_handed_over_answer_is_the_job_as_redis_holds_it(server, node_token, jobs_key) -> None:
    async with ready_fleet(server.ws_url, node_token, 1, processing_ms=20):
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
            answers = await asyncio.gather(*(api.post("/api/v1/jobs", json=BODY, params={"wait": 10}) for _ in range(5)))
            for answer in answers:
                assert answer.status_code == 200, answer.text
                waited = answer.json()
                assert waited["state"] == "DONE"
                assert waited["result"]["text_translated"]
                read = (await api.get(f"/api/v1/jobs/{waited['job_id']}")).json()
                assert waited == read


async def test_a_waiter_on_another_instance_gets_the_same_answer(start_job_server, node_token, jobs_key) -> None:
    # Nodes on the first instance end the job there; the client waits on the second.
    first, second = start_job_server(), start_job_server()
    async with ready_fleet(first.ws_url, node_token, 1, processing_ms=200):
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
            submitted = (await api.post(f"{first.url}/api/v1/jobs", json=BODY)).json()
            waited = (await api.get(f"{second.url}/api/v1/jobs/{submitted['job_id']}", params={"wait": 10})).json()
            assert waited["state"] == "DONE"
            assert waited == (await api.get(f"{first.url}/api/v1/jobs/{submitted['job_id']}")).json()
