"""The pending queue's pump (jobs/placement.py, `pump_pending`): a job that another pass is placing right now
("busy") blocks nobody behind it; a job that found no slot blocks the younger jobs with the same needs (a
slot that frees during the pass goes to the older job). In-process nodes on the suite's real Redis."""

from __future__ import annotations

import pytest

from bench import jobpath
from core.redis import get_redis, keys
from jobs import placement, transitions
from jobs import services as jobs

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = {"src_lang": "en", "tgt_lang": "zh", "audio": jobpath.AUDIO}


async def queued_jobs(count: int) -> list[str]:
    """Jobs submitted while no node exists: they wait in the queue, oldest first."""
    ids = [(await jobs.submit_job(dict(REQUEST))).job_id for _ in range(count)]
    assert await get_redis().zrange(keys().jobs_pending, 0, -1) == ids
    return ids


async def test_a_job_another_pass_is_placing_does_not_hold_up_the_jobs_behind_it() -> None:
    first, second, third = await queued_jobs(3)
    await jobpath.start_nodes(1, capacity=4, name="pump")
    # Another pass (another submitter, another instance) holds the oldest job's selection claim.
    assert await transitions.claim(first, 1, "another-pass", "claim")
    assert await placement.pump_pending() == 2
    states = {job_id: (await jobs.get_job(job_id))["state"] for job_id in (first, second, third)}
    assert states[first] == "SELECTING"
    assert states[second] != "SELECTING" and states[third] != "SELECTING"


async def test_a_job_that_finds_no_slot_holds_up_younger_jobs_with_the_same_needs(monkeypatch) -> None:
    queued = await queued_jobs(3)

    async def busy_with_it(node, frame):  # the node keeps the job: its slot stays taken
        return None

    monkeypatch.setattr(jobpath.InProcessNode, "_answer", busy_with_it)
    await jobpath.start_nodes(1, capacity=1, name="pump")
    # One slot: the oldest takes it; the next finds none, and the youngest must not overtake it.
    assert await placement.pump_pending() == 1
    assert await get_redis().zrange(keys().jobs_pending, 0, -1) == queued[1:]
