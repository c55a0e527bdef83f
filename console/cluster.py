"""One read of the whole cluster's live state from Redis, shared by the metrics scrape (LiveStateCollector),
the live cluster page and `cluster_status`: whatever shows it, the numbers come from the same reads."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from core.redis import get_redis, keys, read_chunked
from nodes.services import status_counts
from pools.overview import Instance, PoolOverview, read_instances, read_overview

# In-flight jobs are counted by reading each one's state; past this many the count is a lower bound (the
# deadline index holds every in-flight job, and a cluster this busy has bigger concerns than one gauge).
IN_FLIGHT_READ_LIMIT = 50_000


@dataclass(frozen=True)
class AuditState:
    backlog: int  # entries not yet in the database
    lag_s: float  # age of the oldest of them; 0 when none
    dead_letters: int  # entries the writer gave up on


@dataclass(frozen=True)
class Snapshot:
    read_at: float
    instances: list[Instance]
    pools: PoolOverview
    jobs_in_flight: dict[str, int]  # by state; every non-terminal job
    jobs_waiting: int  # of those, waiting for capacity in the pending queue
    audit: AuditState
    nodes_by_status: dict[str, int] = field(default_factory=dict)


async def read_jobs_in_flight() -> tuple[dict[str, int], int]:
    """Non-terminal jobs by state (every one has an entry in the deadline index), and how many wait."""
    k = keys()
    client = get_redis()
    per_shard = IN_FLIGHT_READ_LIMIT // len(k.job_deadline_indexes)
    async with client.pipeline(transaction=False) as pipe:
        for index in k.job_deadline_indexes:
            pipe.zrange(index, 0, per_shard - 1)
        pipe.zcard(k.jobs_pending)
        *shards, waiting = await pipe.execute()
    job_ids = [job_id for shard in shards for job_id in shard]
    states = await read_chunked(job_ids, lambda pipe, job_id: pipe.hget(k.job(job_id), "state"))
    return dict(Counter(state for state in states if state)), int(waiting)


async def read_audit_state() -> AuditState:
    """The writer deletes what it committed, so the stream holds exactly the backlog; an entry id starts
    with its creation time in milliseconds."""
    k = keys()
    async with get_redis().pipeline(transaction=False) as pipe:
        for stream in k.audit_streams:
            pipe.xlen(stream)
            pipe.xrange(stream, count=1)
        pipe.xlen(f"{k.audit_stream}:dead")
        *per_stream, dead = await pipe.execute()
    backlog = sum(int(length) for length in per_stream[0::2])
    firsts = [int(first[0][0].split("-")[0]) for first in per_stream[1::2] if first]
    lag_s = max(0.0, time.time() - min(firsts) / 1000) if firsts else 0.0
    return AuditState(backlog, lag_s, int(dead))


async def read_snapshot() -> Snapshot:
    """Every read walks the nodes (or in-flight jobs) in chunks (`read_chunked`), so a scrape at thousands of
    nodes shares the event loop with heartbeats and jobs instead of stalling them."""
    in_flight, waiting = await read_jobs_in_flight()
    return Snapshot(
        read_at=time.time(),
        instances=await read_instances(),
        pools=await read_overview(),
        jobs_in_flight=in_flight,
        jobs_waiting=waiting,
        audit=await read_audit_state(),
        nodes_by_status=await status_counts(),
    )
