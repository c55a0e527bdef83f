"""A placer paused past its claim (a web process stopped, then continued) finds the job placed by another
process meanwhile: it leaves that placement's slot alone, even when both chose the same node."""

from __future__ import annotations

import httpx
import pytest

from core.redis import get_redis, keys
from jobs import placement
from tests.jobs.support import AUDIO, capacity_in_use, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_placer_that_resumes_after_another_placed_the_job_on_the_same_node_keeps_its_slot(
    server, node_token, jobs_key
):
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job_id = (await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})).json()["job_id"]
        assign = await wire.expect("job_assign")
        # The job as the paused placer had read it, before anyone placed it.
        seen = await get_redis().hgetall(keys().job(job_id))
        seen.update(state="SELECTING", node_id="", tried="")

        outcome = await placement._place(job_id, 1, seen, "its-claim-long-expired", None, None, None)
        held = await capacity_in_use(node_id)

        await wire.send(result_for(assign, node_id))
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()

    assert outcome == "stale"
    assert held == 1
    assert job["state"] == "DONE"
    assert await capacity_in_use(node_id) == 0
    await wire.close()
