"""The job path's entry points: submit, read (with long-poll), cancel, retry; and, for the node side, the
handlers of node messages and the periodic work (jobs/outcomes.py, jobs/deadlines.py, jobs/placement.py).

All live state is in Redis. A job is one hash, changed only by fenced scripts (jobs/transitions.py); a node's
capacity is two sorted sets of attempts scored by their expiry (`node_reserve.lua`), so a slot whose holder
vanished frees itself; deadlines (ack, job, pending) are scores that any instance's sweeper fires with Redis
`TIME`. A first attempt that finds a slot costs three round trips from submission to `job_assign`, its result
one more, and the long-polling client's answer one read: `docs/performance.md` counts them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from core import metrics, redis_mux, scripts
from core.redis import get_redis, keys
from jobs import placement, reconcile, transitions, waiters
from jobs.deadlines import sweep_deadlines
from jobs.models import FailureReason, Job, JobState
from jobs.outcomes import (
    node_reconnected,
    node_went_offline,
    on_asr_partial,
    on_job_ack,
    on_job_result,
    on_job_started,
)
from jobs.placement import PASS_THROUGH, fail_attempt, pump_pending, select_and_dispatch
from jobs.transitions import LIVE, RETRYABLE, TERMINAL, job_audit_data

# The node side and the periodic tasks reach the job path through this module.
__all__ = [
    "LIVE", "PASS_THROUGH", "RETRYABLE", "TERMINAL", "InvalidJob", "JobConflict", "JobNotFound", "Submitted",
    "cancel_job", "decode_audio", "fail_attempt", "get_job", "job_audit_data", "node_reconnected", "node_went_offline",
    "on_asr_partial", "on_job_ack",
    "on_job_result", "on_job_started", "pump_pending", "retry_job", "select_and_dispatch", "submit_job",
    "sweep_deadlines", "wait_for_job",
]  # fmt: skip


class JobNotFound(Exception):
    pass


class JobConflict(Exception):
    """An idempotency key reused with a different body."""


class InvalidJob(Exception):
    def __init__(self, code: str, message: str, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.field, self.status = code, message, field, status


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool
    # The job as the submitter should see it: once it ended, or as it was when the wait ran out.
    job: dict[str, Any] = field(default_factory=dict)


# --- submit -----------------------------------------------------------------------------------------------


def decode_audio(audio: str) -> bytes:
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidJob("INVALID_AUDIO", "audio is not valid base64", "audio") from None
    if not raw:
        raise InvalidJob("INVALID_AUDIO", "audio is empty", "audio")
    if len(raw) > settings.JOB_MAX_AUDIO_BYTES:
        raise InvalidJob(
            "AUDIO_TOO_LARGE", f"audio is {len(raw)} bytes; the limit is {settings.JOB_MAX_AUDIO_BYTES}", "audio", 413
        )
    return raw


async def submit_job(
    request: dict[str, Any], *, idempotency_key: str = "", client_id: str = "", wait_s: float = 0.0
) -> Submitted:
    """Create a job, place its first attempt, and with `wait_s` wait for its end.

    Steps: validate the audio (and a pinned node); derive the job id from the idempotency key when given (so
    "exists?" and "create" are one atomic script); watch for the job's end before it can happen, so the
    waiter needs no read until it is announced; create the job (with its deadline, audit entry and attempt
    1's selection claim) in the round trip that samples the candidates; place it; wait.
    """
    decode_audio(request["audio"])
    pinned = request.get("node_id") or ""
    if pinned and not await get_redis().exists(keys().node_meta(pinned)):
        raise InvalidJob("UNKNOWN_NODE", f"no node {pinned!r} is registered", "node_id")
    if idempotency_key:
        job_id = "job-" + hashlib.sha256(f"{client_id}\n{idempotency_key}".encode()).hexdigest()[:24]
        if await _lost_from_redis(job_id):
            # Created before Redis lost its data: answer the job the mirror knows (settled FAILED STATE_LOST)
            # instead of creating it again under the same id and sending its attempt 1 out a second time.
            metrics.JOBS_SUBMITTED.labels(result="duplicate").inc()
            return Submitted(job_id, False, await get_job(job_id))
    else:
        job_id = f"job-{secrets.token_hex(12)}"
    if wait_s <= 0:
        created = await _placed_even_if_cancelled(job_id, request, pinned, fresh_id=not idempotency_key)
        return Submitted(job_id, created, await get_job(job_id))
    deadline = time.monotonic() + wait_s
    async with waiters.watch(job_id) as ended:
        created = await _placed_even_if_cancelled(job_id, request, pinned, fresh_id=not idempotency_key)
        job = await _wait(job_id, ended, deadline, read_first=not created)
    return Submitted(job_id, created, job)


# Placements that outlive the request that started them (a client that went away): kept referenced here.
_placing: set[asyncio.Future[bool]] = set()


async def _placed_even_if_cancelled(job_id: str, request: dict[str, Any], pinned: str, *, fresh_id: bool) -> bool:
    """`_create_and_place`, shielded from the caller's cancellation: a client that disconnects while its job
    is being created and placed (the routes cancel a long-poll whose client left) must not cut the placement
    between the reservation and the dispatch, which left the slot held until it expired and the job waiting
    for the sweeper. The job goes on; only the wait for it ends."""
    placing = asyncio.ensure_future(_create_and_place(job_id, request, pinned, fresh_id=fresh_id))
    _placing.add(placing)
    placing.add_done_callback(_placing.discard)
    return await asyncio.shield(placing)


async def _lost_from_redis(job_id: str) -> bool:
    """True when the database mirror has the job but Redis does not: Redis lost it (a wipe, a failover to a
    lagging replica). One indexed read of the mirror per submission with an idempotency key; Redis is asked
    only when the mirror has the row (a duplicate). A database that does not answer skips the check: the
    submission goes on as before (the row may then be created again, as without this check)."""
    try:
        known = await Job.objects.filter(job_id=job_id).aexists()
    except (OperationalError, InterfaceError):
        return False
    return known and not await get_redis().exists(keys().job(job_id))


async def _create_and_place(job_id: str, request: dict[str, Any], pinned: str, *, fresh_id: bool) -> bool:
    """Create the job and place its first attempt; False when the idempotency key named an existing job.

    A job with a fresh random id cannot exist already, so its first reservation may ride in the creating
    round trip (placement.Sample's guess); a job named by an idempotency key may be a duplicate whose
    original holds that very reservation, so it reserves only after it is known to be new."""
    body = {k: v for k, v in request.items() if k != "audio"}
    body_hash = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    utterance_index = request.get("utterance_index")
    fields = {
        "request": json.dumps(body),
        "src_lang": request["src_lang"],
        "tgt_lang": request["tgt_lang"],
        "pinned": pinned,
        "trace_id": request.get("trace_id") or f"t-{secrets.token_hex(8)}",
        "timeout_ms": str(request.get("timeout_ms") or int(settings.JOB_TIMEOUT_S * 1000)),
        # Beside the request for the scripts that write the job's audit entry.
        "session_id": request.get("session_id") or "",
        "utterance_index": "" if utterance_index is None else str(utterance_index),
    }
    k = keys()
    # The creator holds attempt 1's selection claim from the start (see job_claim.lua).
    claim = secrets.token_hex(8)
    sample = placement.Sample({**fields, "tried": ""}, request)

    def build(pipe: Any) -> None:
        transitions.create(pipe, job_id, body_hash, fields, request["audio"], claim)
        pipe.zcard(k.jobs_pending)
        sample.queue(pipe, job_id if fresh_id else None)

    result, waiting, *sampled = await scripts.run_pipeline("job_create", build)
    placement.queue_seen.waiting = bool(waiting)
    parsed = sample.parse(sampled)
    if parsed.reserved and (result[0] == "EXISTS" or waiting):
        # Not to be placed now (a duplicate, or jobs wait before it): the slot reserved with it goes back.
        await transitions.free_slot(parsed.reserved[0], job_id, 1)
        parsed = placement.Sampled(parsed.candidates, parsed.populated, parsed.verified, parsed.version)
    if result[0] == "EXISTS":
        if result[1] != "1":
            raise JobConflict(job_id)
        metrics.JOBS_SUBMITTED.labels(result="duplicate").inc()
        return False
    metrics.JOBS_SUBMITTED.labels(result="created").inc()
    created_at = int(result[1])
    # The hash as job_create.lua wrote it, as far as placing the job needs it: no read back.
    job = {**fields, "job_id": job_id, "state": JobState.SELECTING, "attempt_id": "1", "tried": "", "created_at": str(created_at)}
    if waiting:
        # Older jobs are waiting for capacity: queue behind them (first come, first served) and let the
        # pump, which serves the queue in order, place this one when its turn comes.
        await get_redis().zadd(k.jobs_pending, {job_id: created_at}, nx=True)
        await transitions.claim(job_id, 1, claim, "release")
        await pump_pending()
    else:
        await placement.place_claimed(job_id, 1, job, claim, submitted_at=created_at, audio=request["audio"], sample=parsed)
    return True


# --- reads ---------------------------------------------------------------------------------------------------------


async def get_job(job_id: str) -> dict[str, Any]:
    """The job's live view: one HGETALL (attempts are fields of the job hash), and one more read only when
    the node streamed partial text."""
    k = keys()
    job = waiters.handed_over(job_id) or await redis_mux.read_hash(k.job(job_id))
    if not job:
        return await _from_mirror(job_id)
    attempts = transitions.attempts_of(job)
    for entry in attempts:
        if job.get(f"node_error:{entry['attempt_id']}"):
            entry["node_error"] = json.loads(job[f"node_error:{entry['attempt_id']}"])
    view: dict[str, Any] = {
        "job_id": job_id,
        "state": job["state"],
        "attempt_id": int(job.get("attempt_id") or 1),
        "node_id": job.get("node_id") or None,
        "pool": job.get("pool") or None,
        "src_lang": job.get("src_lang"),
        "tgt_lang": job.get("tgt_lang"),
        "trace_id": job.get("trace_id"),
        "created_at": int(job["created_at"]),
        "timings": {name: int(job[name]) for name in ("created_at", "dispatched_at", "acked_at", "ended_at") if job.get(name)},
        "tried_nodes": [n for n in job.get("tried", "").split(",") if n],
        "attempts": attempts,
    }
    if job.get("result"):
        view["result"] = json.loads(job["result"])
    if int(job.get("partials") or 0):
        view["partials"] = [json.loads(p) for p in await get_redis().lrange(k.job_partials(job_id), 0, -1)]
    if job.get("error") and job["state"] in (JobState.FAILED, JobState.CANCELLED):
        view["error"] = json.loads(job["error"])
    return view


async def _from_mirror(job_id: str) -> dict[str, Any]:
    """A job Redis does not know: ended past the retention, or lost with Redis's data (then settled FAILED
    STATE_LOST, jobs/reconcile.py). Unknown to the database as well: JobNotFound."""
    try:
        return await database_sync_to_async(reconcile.ended_view)(job_id)
    except reconcile.NotInMirror:
        raise JobNotFound(job_id) from None


async def wait_for_job(job_id: str, wait_s: float) -> dict[str, Any]:
    """The job once it is terminal, or as it is when `wait_s` runs out (long-poll). Sleeps until the job's
    end is announced (jobs/waiters.py) instead of polling."""
    if wait_s <= 0:
        return await get_job(job_id)
    deadline = time.monotonic() + wait_s
    # Subscribed (a no-op while the process has other waiters) before the first read, so an end that comes
    # after that read is always announced to this waiter.
    async with waiters.watch(job_id) as ended:
        return await _wait(job_id, ended, deadline, read_first=True)


async def _wait(job_id: str, ended: asyncio.Event, deadline: float, *, read_first: bool) -> dict[str, Any]:
    """Read the job whenever its end may have been announced (and at least every SAFETY_POLL_S) until it is
    terminal or `deadline` passes. Without `read_first` the first read waits for the first notice: the
    caller watched since before the job existed, so the job cannot have ended unannounced."""
    if not read_first:
        await _sleep(ended, deadline)
    while True:
        # Cleared before the read: a notice that arrives while the read is in flight is kept.
        ended.clear()
        job = await get_job(job_id)
        if job["state"] in TERMINAL or time.monotonic() >= deadline:
            return job
        await _sleep(ended, deadline)


async def _sleep(ended: asyncio.Event, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended.wait(), min(remaining, waiters.SAFETY_POLL_S))


# --- operators -----------------------------------------------------------------------------------------------------


async def cancel_job(job_id: str, actor: str) -> dict[str, Any]:
    """Cancel a live job: CANCELLED (its audit entries in the same script), its slot freed, the node told
    (`job_cancel`), and the job out of the pending queue."""
    k = keys()
    job = await get_redis().hmget(k.job(job_id), ["state", "attempt_id", "node_id"])
    if job[0] is None:
        raise JobNotFound(job_id)
    if job[0] in LIVE:
        # Who cancelled it, for the history: the admin and the API show it as the job's error.
        error = json.dumps({"code": "CANCELLED", "message": f"cancelled by {actor}"})
        step = await transitions.step(
            job_id, "", list(LIVE), JobState.CANCELLED, {"reason": "CANCELLED", "cancelled_by": actor, "error": error}
        )
        if step[0] == "OK":
            node_id, attempt, trace_id = step[4], step[5], step[7]
            if node_id:
                await transitions.free_slot(node_id, job_id, attempt)
                await placement.send_cancel(job_id, node_id, "cancelled", trace_id)
            async with get_redis().pipeline(transaction=False) as pipe:
                pipe.zrem(k.jobs_pending, job_id)
                pipe.zcard(k.jobs_pending)
                _, waiting = await pipe.execute()
            placement.ended(
                job_id, JobState.CANCELLED, FailureReason.CANCELLED, attempt=attempt, node_id=node_id, trace_id=trace_id,
                waiting=int(waiting),
            )  # fmt: skip
    return await get_job(job_id)


async def retry_job(job_id: str, actor: str) -> dict[str, Any]:
    """An operator's retry of a live job: its current attempt ends (NODE_ERROR) and another node gets it."""
    k = keys()
    job = await get_redis().hmget(k.job(job_id), ["state", "attempt_id", "node_id"])
    if job[0] is None:
        raise JobNotFound(job_id)
    if job[0] in (JobState.DISPATCHED, JobState.ACKED, JobState.RESERVED):
        await fail_attempt(job_id, job[1], FailureReason.NODE_ERROR, f"retried by {actor}", job[2] or "")
    return await get_job(job_id)
