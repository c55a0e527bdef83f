"""A job whose placer died after creating it (its claim expired while the job is still SELECTING and nobody
queued it) is taken over by another instance's sweeper as the claim runs out and placed on a ready node,
instead of failing NO_AVAILABLE_NODE at its pending deadline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core import metrics
from core.redis import get_redis, keys
from jobs import deadlines, placement, services
from tests.jobs.support import AUDIO, capacity_in_use, ready_node, result_for
from tests.support.metrics import parse

pytestmark = pytest.mark.django_db(transaction=True)

PENDING_S = "30"


async def test_a_job_whose_placer_died_right_after_creating_it_is_placed_by_another_instance(
    start_job_server, node_token, jobs_key, settings, monkeypatch
):
    settings.JOB_PENDING_TIMEOUT_S = float(PENDING_S)
    survivor = start_job_server(JOB_PENDING_TIMEOUT_S=PENDING_S)
    wire, node_id = await ready_node(survivor, node_token)

    async def dies_before_placing(*args, **kwargs):
        raise asyncio.CancelledError  # the placer's process is gone: no placement, no claim given back

    monkeypatch.setattr(placement, "place_claimed", dies_before_placing)
    with pytest.raises(asyncio.CancelledError):
        await services.submit_job({"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
    [job_id] = [job for index in keys().job_deadline_indexes for job in await get_redis().zrange(index, 0, -1)]
    assert await get_redis().hget(keys().job(job_id), "state") == "SELECTING"

    # Without the takeover nothing reaches the node before the 30 s pending deadline, and then the job fails.
    assign = await wire.expect("job_assign", timeout=15)
    await wire.send(result_for(assign, node_id))
    async with httpx.AsyncClient(base_url=survivor.url, headers={"Authorization": f"Bearer {jobs_key}"}) as api:
        job = (await api.get(f"/api/v1/jobs/{job_id}", params={"wait": 5})).json()
        scrape = parse((await api.get("/metrics")).text)

    assert assign["job_id"] == job_id
    assert (job["state"], job["attempt_id"], job["node_id"]) == ("DONE", 1, node_id)
    assert await capacity_in_use(node_id) == 0
    assert scrape[("scheduler_job_claims_total", (("result", "taken_over"),))] == 1
    await wire.close()


async def test_a_job_waiting_for_capacity_is_not_taken_over_twice(start_job_server, settings):
    settings.JOB_PENDING_TIMEOUT_S = float(PENDING_S)
    submitted = await services.submit_job({"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
    k = keys()
    assert await get_redis().zscore(k.jobs_pending, submitted.job_id) is not None
    claim, claim_until = await get_redis().hmget(k.job(submitted.job_id), ["claim", "claim_until"])
    before = metrics.JOB_CLAIMS.labels(result="taken_over")._value.get()

    await deadlines._take_over_orphan(submitted.job_id, "1", claim or "", int(claim_until or 0), 2**62)

    assert metrics.JOB_CLAIMS.labels(result="taken_over")._value.get() == before
    assert await get_redis().hget(k.job(submitted.job_id), "state") == "SELECTING"
