"""Each transition of a job writes its audit entries in the same script, into the audit stream of the job's
shard (same hash slot), so no transition is ever visible without its entry; the writer moves them into the
database like the main stream's."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from bench.jobpath import run_jobs, start_nodes
from core import audit
from core.redis import get_redis, keys
from jobs import services
from jobs.models import Job, JobAttempt
from nodes.schemas import parse_node_message

pytestmark = pytest.mark.django_db(transaction=True)


async def shard_entries(job_id: str) -> list[list[dict]]:
    k = keys()
    stream = k.job_audit(k.job_shard(job_id))
    return [json.loads(fields["data"]) for _, fields in await get_redis().xrange(stream)]


async def one_done_job() -> tuple[str, object]:
    [node] = await start_nodes(1, 2)
    await run_jobs(1, 1)
    [job_id] = [key.rsplit(":", 1)[1] for key in await get_redis().keys(f"{keys().prefix}:job:*") if key.count(":") == 3]
    return job_id, node


async def test_creation_dispatch_and_result_each_write_their_entries_with_the_hashs_seq():
    job_id, node = await one_done_job()

    entries = await shard_entries(job_id)

    assert [[(e["type"], e["state"], e["seq"]) for e in entry] for entry in entries] == [
        [("job", "SELECTING", 1)],
        [("attempt", "DISPATCHED", 2)],
        [("attempt", "DONE", 3), ("job", "DONE", 3)],
    ]
    assert await get_redis().hget(keys().job(job_id), "seq") == "3"
    done = entries[2][1]
    assert done["node_id"] == node.builder.node_id and done["session_id"] == "s-cost" and done["utterance_index"] == 0
    assert set(done["timings"]) == {"dispatched_at", "ended_at"}


async def test_a_result_for_an_older_attempt_writes_no_entry_and_changes_nothing():
    job_id, node = await one_done_job()
    before = await shard_entries(job_id)
    stale = node.builder.build_success_result(
        {"job_id": job_id, "attempt_id": 7, "session_id": "s", "utterance_index": 0, "tgt_lang": "zh"}, 0
    )

    await services.on_job_result(parse_node_message(stale), node.builder.node_id)

    assert await shard_entries(job_id) == before
    assert await get_redis().hget(keys().job(job_id), "seq") == "3"


async def test_the_writer_moves_a_shards_entries_into_the_job_and_attempt_rows():
    job_id, node = await one_done_job()

    written = await sync_to_async(audit.drain)()

    assert written >= 4
    job = await Job.objects.aget(job_id=job_id)
    assert (job.state, job.node_id, job.seq, job.session_id) == ("DONE", node.builder.node_id, 3, "s-cost")
    attempt = await JobAttempt.objects.aget(job_id=job_id, attempt_id=1)
    assert (attempt.state, attempt.started_at is not None, attempt.ended_at is not None) == ("DONE", True, True)
    assert await get_redis().xlen(keys().job_audit(keys().job_shard(job_id))) == 0
