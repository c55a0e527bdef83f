"""Job deadlines as data: each shard's index (a sorted set of job ids scored by their next deadline, Redis
clock) is swept by any instance. The index is advisory: the job hash holds the deadline itself, and an index
entry may be earlier than it (a transition that moves a deadline later leaves the index alone; the sweep then
moves the entry on), never later.
"""

from __future__ import annotations

import logging
from typing import Any

from core import metrics, scripts
from core.redis import get_redis, keys
from jobs.models import FailureReason, JobState
from jobs.placement import fail_attempt
from jobs.transitions import TERMINAL, attempts_of

log = logging.getLogger(__name__)


async def sweep_deadlines(limit: int = 500) -> int:
    """Fire every job deadline that has passed by Redis's clock: ack and job timeouts end the attempt
    (retry elsewhere), a pending deadline fails the job with NO_AVAILABLE_NODE or POOL_EMPTY. Safe from any
    instance: each transition is fenced by attempt. Two round trips while nothing is due, whatever the
    number of jobs."""
    k = keys()
    client = get_redis()
    seconds, micros = await client.time()
    now = seconds * 1000 + micros // 1000
    indexes = k.job_deadline_indexes
    async with client.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.zrangebyscore(index, "-inf", now, start=0, num=limit, withscores=True)
        due_by_index = await pipe.execute()
    fired = 0
    for index, due in zip(indexes, due_by_index, strict=True):
        for job_id, score in due:
            fired += await _fire(index, job_id, score, now)
    return fired


async def _fire(index: str, job_id: str, score: Any, now: int) -> int:
    job = await get_redis().hmget(
        keys().job(job_id), ["state", "attempt_id", "node_id", "deadline", "deadline_kind", "waiting_reason", "claim", "claim_until"]
    )
    state, attempt, node_id, deadline, kind, waiting, claim, claim_until = job
    if state is None or state in TERMINAL or not deadline:
        await scripts.run("deadline_settle", [index], [job_id, score, ""])
        return 0
    if state == JobState.SELECTING and int(deadline) > now:
        await _take_over_orphan(job_id, attempt, claim or "", int(claim_until or 0), now)
    if int(deadline) > now:
        await scripts.run("deadline_settle", [index], [job_id, score, int(deadline)])
        return 0
    if kind == "pending" and state == JobState.SELECTING:
        reason = waiting or FailureReason.NO_AVAILABLE_NODE
        message = "no node serves these languages" if reason == FailureReason.POOL_EMPTY else "no node had capacity in time"
        await fail_attempt(job_id, attempt, reason, await _earlier_causes(job_id, attempt) + message, "")
    elif kind == "ack" and state == JobState.DISPATCHED:
        metrics.TIMEOUTS.labels(kind="ack").inc()
        await fail_attempt(job_id, attempt, FailureReason.ACK_TIMEOUT, "no job_ack in time", node_id)
    elif kind == "job" and state in (JobState.DISPATCHED, JobState.ACKED):
        metrics.TIMEOUTS.labels(kind="job").inc()
        await fail_attempt(job_id, attempt, FailureReason.JOB_TIMEOUT, "no result in time", node_id)
    elif kind == "reconnect" and state in (JobState.DISPATCHED, JobState.ACKED):
        await fail_attempt(job_id, attempt, FailureReason.NODE_OFFLINE, "no result after the node reconnected", node_id)
    elif state == JobState.RESERVED:
        # A job left RESERVED by an earlier version of the job path whose instance died before dispatching.
        await fail_attempt(job_id, attempt, FailureReason.DISPATCH_FAILED, "dispatch did not complete", node_id)
    return 1


async def _take_over_orphan(job_id: str, attempt: str, claim: str, claim_until: int, now: int) -> None:
    """A SELECTING job that nobody places: no live claim of its current attempt, and not in the pending queue
    (where the pump would find it). Its placer died between creating it (or ending its previous attempt)
    and placing it. Queued in arrival order, the pump places it on this same beat."""
    if claim.startswith(f"{attempt}|") and claim_until > now:
        return  # its placer is at work
    k = keys()
    created_at = await get_redis().hget(k.job(job_id), "created_at")
    if created_at is None or not await get_redis().zadd(k.jobs_pending, {job_id: int(created_at)}, nx=True):
        return  # gone meanwhile, or already waiting for capacity
    metrics.JOB_CLAIMS.labels(result="taken_over").inc()
    log.warning("orphaned job taken over", extra={"event": "job_taken_over", "job_id": job_id, "attempt_id": attempt})


async def _earlier_causes(job_id: str, attempt: str) -> str:
    """What ended the attempts before `attempt`, so a job that fails waiting for a retry names the real cause
    ("attempt 1 (node-1A2B3C4D): NODE_OFFLINE; attempt 2: no node had capacity in time")."""
    if attempt == "1":
        return ""
    entries = attempts_of(await get_redis().hgetall(keys().job(job_id)))
    causes = [
        f"attempt {a['attempt_id']}" + (f" ({a['node_id']})" if a.get("node_id") else "") + f": {a.get('reason')}"
        for a in entries
        if str(a["attempt_id"]) != attempt and a.get("reason")
    ]
    return "".join(f"{cause}; " for cause in causes) + f"attempt {attempt}: "
