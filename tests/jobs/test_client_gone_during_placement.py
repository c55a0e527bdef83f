"""A submission cancelled while its job is being created and placed (the REST routes cancel a long-poll
whose client disconnected) does not cut the placement short: the job is dispatched and ends, and no slot
stays held. In-process nodes (bench/jobpath.py) on the suite's real Redis."""

from __future__ import annotations

import asyncio

import pytest

from bench import jobpath
from core.redis import get_redis, keys
from jobs import placement
from jobs import services as jobs

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_cancelled_submission_still_places_its_job_and_holds_no_slot(monkeypatch) -> None:
    started = await jobpath.start_nodes(2, capacity=4, name="gone")
    node_ids = [node.builder.node_id for node in started]
    placing = asyncio.Event()
    place_claimed = placement.place_claimed

    async def slow_place(*args, **kwargs):
        # The slot is reserved (it rode with the creation); the client leaves before the dispatch.
        placing.set()
        await asyncio.sleep(0.2)
        return await place_claimed(*args, **kwargs)

    monkeypatch.setattr(placement, "place_claimed", slow_place)
    request = {"src_lang": "en", "tgt_lang": "zh", "audio": jobpath.AUDIO}
    await jobs.submit_job(dict(request), wait_s=10)  # a first job: the pool is sampled, the next one guesses
    placing.clear()
    submission = asyncio.ensure_future(jobs.submit_job(dict(request), wait_s=10))
    await placing.wait()
    submission.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submission

    client = get_redis()
    for _ in range(100):
        in_use = [await client.zcard(keys().node_reservations(n)) + await client.zcard(keys().node_running(n)) for n in node_ids]
        if sum(in_use) == 0 and await _all_jobs_done():
            break
        await asyncio.sleep(0.05)
    assert sum(in_use) == 0, in_use
    assert await _all_jobs_done()


async def _all_jobs_done() -> bool:
    client = get_redis()
    job_keys = [key async for key in client.scan_iter(match=f"{keys().prefix}:job:*") if key.count(":") == 3]
    states = [await client.hget(key, "state") for key in job_keys]
    return len(states) == 2 and all(state == "DONE" for state in states)
