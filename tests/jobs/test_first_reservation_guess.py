"""A first attempt reserves its slot in the round trip that creates the job, on a member of its pool this
process sampled within the last second (jobs/placement.py, `Sample.guess`). node_reserve.lua stays the
authority: a guess it refuses falls back to the sampled candidates, a guessed slot that is not used (jobs
already wait in the queue) is given back, and a job named by an idempotency key never guesses. In-process
nodes (bench/jobpath.py) on the suite's real Redis."""

from __future__ import annotations

import pytest

from bench import jobpath
from core import metrics
from core.redis import get_redis, keys
from jobs import placement
from jobs import services as jobs
from jobs.transitions import member

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = {"src_lang": "en", "tgt_lang": "zh", "audio": jobpath.AUDIO}


def guesses(result: str) -> float:
    return metrics.RESERVATION_GUESSES.labels(result=result)._value.get()


@pytest.fixture
async def nodes():
    placement._recent_members.clear()
    started = await jobpath.start_nodes(2, capacity=4, name="guess")
    yield [node.builder.node_id for node in started]
    placement._recent_members.clear()


async def slots_holding(job_id: str, node_ids: list[str]) -> list[str]:
    client = get_redis()
    k = keys()
    slot = member(job_id, 1)
    return [
        node for node in node_ids
        if await client.zscore(k.node_reservations(node), slot) is not None or await client.zscore(k.node_running(node), slot) is not None
    ]  # fmt: skip


async def test_a_guess_is_made_once_the_pool_was_sampled_and_the_job_is_done(nodes) -> None:
    first = await jobs.submit_job(dict(REQUEST), wait_s=10)
    assert first.job["state"] == "DONE"
    ok_before = guesses("ok")
    second = await jobs.submit_job(dict(REQUEST), wait_s=10)
    assert second.job["state"] == "DONE"
    assert guesses("ok") == ok_before + 1
    assert second.job["node_id"] in nodes


async def test_a_refused_guess_falls_back_to_the_sample(nodes) -> None:
    await jobs.submit_job(dict(REQUEST), wait_s=10)
    # The cache names a node Redis does not know: node_reserve refuses it, the sampled members take the job.
    for pool, (seen, _) in list(placement._recent_members.items()):
        placement._recent_members[pool] = (seen, ["node-GONE"])
    refused_before = guesses("refused")
    submitted = await jobs.submit_job(dict(REQUEST), wait_s=10)
    assert submitted.job["state"] == "DONE"
    assert submitted.job["node_id"] in nodes
    assert guesses("refused") == refused_before + 1
    assert await get_redis().zcard(keys().node_reservations("node-GONE")) == 0


async def test_a_guessed_slot_goes_back_when_jobs_wait_and_the_job_queues_behind_them(nodes) -> None:
    await jobs.submit_job(dict(REQUEST), wait_s=10)
    client = get_redis()
    for _ in range(10):
        # Something waits in the queue: the new job must queue behind it, not keep the slot it guessed.
        await client.zadd(keys().jobs_pending, {"job-waiting-before": 0})
        ok_before = guesses("ok")
        submitted = await jobs.submit_job(dict(REQUEST), wait_s=0)
        assert guesses("ok") == ok_before + 1
        # One slot at most holds the job: the one it was placed on (by the queue's pump), never the guessed
        # one besides it.
        assert len(await slots_holding(submitted.job_id, nodes)) <= 1
        await client.zrem(keys().jobs_pending, "job-waiting-before")
        ended = await jobs.wait_for_job(submitted.job_id, 10)
        assert ended["state"] == "DONE"
        assert await slots_holding(submitted.job_id, nodes) == []


async def test_a_job_named_by_an_idempotency_key_does_not_guess(nodes) -> None:
    await jobs.submit_job(dict(REQUEST), wait_s=10)
    before = guesses("ok") + guesses("refused")
    submitted = await jobs.submit_job(dict(REQUEST), wait_s=10, idempotency_key="k-1", client_id="c")
    assert submitted.job["state"] == "DONE"
    assert guesses("ok") + guesses("refused") == before
