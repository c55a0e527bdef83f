"""The long-poll (`?wait=`) sleeps until the job's end is announced on Redis pub/sub, instead of polling.

Real Redis (the suite's own process); the job's end is written and announced from another connection, as
another instance would.
"""

import asyncio
import json
import time

import pytest
import redis

from core.redis import keys
from jobs import services, waiters


def seed_job(client: redis.Redis, job_id: str) -> None:
    client.hset(
        keys().job(job_id),
        mapping={"job_id": job_id, "state": "DISPATCHED", "attempt_id": "1", "created_at": str(int(time.time() * 1000)),
                 "request": json.dumps({}), "src_lang": "en", "tgt_lang": "zh"},
    )  # fmt: skip


def end_job(client: redis.Redis, job_id: str, *, announce: bool) -> None:
    client.hset(keys().job(job_id), mapping={"state": "DONE", "result": json.dumps({"text_asr": "hi"})})
    if announce:
        client.publish(keys().jobs_ended_channel, job_id)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of the job the long-poll makes."""
    seen: list[str] = []
    real = services.get_job

    async def counting(job_id: str):
        seen.append(job_id)
        return await real(job_id)

    monkeypatch.setattr(services, "get_job", counting)
    return seen


async def test_an_announced_end_wakes_the_waiter_without_polling(client, reads, monkeypatch) -> None:
    # With the safety re-read out of reach, only the announcement can end this wait before `wait` runs out.
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 60.0)
    seed_job(client, "job-a")
    waiting = asyncio.create_task(services.wait_for_job("job-a", 8.0))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    end_job(client, "job-a", announce=True)
    job = await asyncio.wait_for(waiting, 5.0)
    assert job["state"] == "DONE"
    assert job["result"]["text_asr"] == "hi"
    # The read once subscribed and the read after the wake: no polling in between.
    assert len(reads) == 2


async def test_a_notice_for_another_job_does_not_end_the_wait(client, reads, monkeypatch) -> None:
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 60.0)
    seed_job(client, "job-a")
    seed_job(client, "job-b")
    waiting = asyncio.create_task(services.wait_for_job("job-a", 1.5))
    await asyncio.sleep(0.3)
    end_job(client, "job-b", announce=True)
    job = await waiting
    # The wait ran out with the job as it was.
    assert job["state"] == "DISPATCHED"
    assert reads.count("job-a") == 2


async def test_an_end_whose_notice_was_lost_is_still_seen(client, monkeypatch) -> None:
    """Pub/sub is at-most-once: the periodic re-read catches an end nobody announced."""
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 0.2)
    seed_job(client, "job-a")
    waiting = asyncio.create_task(services.wait_for_job("job-a", 8.0))
    await asyncio.sleep(0.3)
    end_job(client, "job-a", announce=False)
    job = await asyncio.wait_for(waiting, 5.0)
    assert job["state"] == "DONE"


async def test_a_job_already_ended_is_returned_by_the_first_read(client, reads) -> None:
    seed_job(client, "job-a")
    end_job(client, "job-a", announce=False)
    job = await services.wait_for_job("job-a", 8.0)
    assert job["state"] == "DONE"
    assert len(reads) == 1


async def test_without_wait_the_job_is_read_once_and_nothing_subscribes(client, reads) -> None:
    seed_job(client, "job-a")
    job = await services.wait_for_job("job-a", 0)
    assert job["state"] == "DISPATCHED"
    assert len(reads) == 1
    assert client.pubsub_numsub(keys().jobs_ended_channel) == [(keys().jobs_ended_channel, 0)]


async def test_the_subscription_ends_once_nobody_waits(client, monkeypatch) -> None:
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 0.1)
    monkeypatch.setattr(waiters, "IDLE_S", 0.3)
    seed_job(client, "job-a")
    await services.wait_for_job("job-a", 0.3)
    channel = keys().jobs_ended_channel
    assert client.pubsub_numsub(channel) == [(channel, 1)]
    deadline = time.monotonic() + 5
    while client.pubsub_numsub(channel) != [(channel, 0)] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert client.pubsub_numsub(channel) == [(channel, 0)]
    # A later waiter subscribes again and is woken as before.
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 60.0)
    waiting = asyncio.create_task(services.wait_for_job("job-a", 8.0))
    await asyncio.sleep(0.3)
    end_job(client, "job-a", announce=True)
    assert (await asyncio.wait_for(waiting, 5.0))["state"] == "DONE"


async def test_many_waiters_of_one_job_all_wake(client, monkeypatch) -> None:
    monkeypatch.setattr(waiters, "SAFETY_POLL_S", 60.0)
    seed_job(client, "job-a")
    waiting = [asyncio.create_task(services.wait_for_job("job-a", 8.0)) for _ in range(5)]
    await asyncio.sleep(0.5)
    end_job(client, "job-a", announce=True)
    jobs = await asyncio.wait_for(asyncio.gather(*waiting), 5.0)
    assert [job["state"] for job in jobs] == ["DONE"] * 5
    # Only one subscription for the whole process.
    assert client.pubsub_numsub(keys().jobs_ended_channel) == [(keys().jobs_ended_channel, 1)]
