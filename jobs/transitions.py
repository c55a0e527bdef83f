"""The job's fenced transitions: one typed call per Lua script, and what every caller of them shares.

A job's keys, its shard's deadline index and its shard's audit stream share one hash tag (scheduler/redis.py),
so each transition writes the job, its attempt, its deadline and its audit entries in one script: a
transition is never visible without its audit entry, whatever dies right after it. A terminal transition
also sets the retention and announces the end to long-polling clients (jobs/waiters.py) in that script.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings

from core import scripts
from core.redis import get_redis, keys
from jobs.models import FailureReason, JobState

TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
LIVE = (JobState.SELECTING, JobState.RESERVED, JobState.DISPATCHED, JobState.ACKED)
# Reasons after which another node may well succeed.
RETRYABLE = {
    FailureReason.ACK_TIMEOUT, FailureReason.JOB_TIMEOUT, FailureReason.DISPATCH_FAILED,
    FailureReason.NODE_OFFLINE, FailureReason.NODE_ERROR, FailureReason.MODEL_NOT_AVAILABLE,
}  # fmt: skip
# Attempts that ended because the node went away, not because it answered: the node may not have seen the
# job at all (or restarted and forgot it), so it may take a retry when no untried node has capacity.
WENT_AWAY = {FailureReason.NODE_OFFLINE, FailureReason.DISPATCH_FAILED}
# Longer than a selection ever takes (a few reservation attempts), short enough that a selector that died
# mid-way does not hold a waiting job back for long.
CLAIM_TTL_MS = 5000


def now_ms() -> int:
    return int(time.time() * 1000)


def orphan_check_ms() -> int:
    """When the sweeper first looks at a job entering SELECTING: as its placer's claim runs out, so a job whose
    placer died is taken over then (jobs/deadlines.py), not failed at its pending deadline; the sweep moves the
    entry on to that deadline afterwards."""
    return min(CLAIM_TTL_MS, int(settings.JOB_PENDING_TIMEOUT_S * 1000))


def job_audit_data(job_id: str, job: dict[str, str]) -> dict[str, Any]:
    """A job's audit entry from its live hash, as the transition scripts build it (`lib/job.lua`), for the
    reconciler that appends the entries of an end whose own were lost with Redis."""
    request = json.loads(job.get("request") or "{}")
    utterance_index = job.get("utterance_index", request.get("utterance_index"))
    return dict(
        type="job", job_id=job_id, seq=int(job.get("seq") or 0), state=job["state"], reason=job.get("reason", ""),
        src_lang=job.get("src_lang", ""), tgt_lang=job.get("tgt_lang", ""), pool=job.get("pool", ""),
        node_id=job.get("node_id", ""), attempt_id=int(job.get("attempt_id") or 1),
        session_id=job.get("session_id", request.get("session_id") or ""),
        utterance_index=None if utterance_index in (None, "") else int(utterance_index),
        trace_id=job.get("trace_id", ""), pinned_node=job.get("pinned", ""), created_at=int(job["created_at"]),
        ended_at=int(job["ended_at"]) if job.get("ended_at") else None,
        error=json.loads(job["error"]) if job.get("error") else None,
        timings={name: int(job[name]) for name in ("dispatched_at", "acked_at", "ended_at") if job.get(name)},
    )  # fmt: skip


def member(job_id: str, attempt: int | str) -> str:
    """An attempt's entry in a node's reserved and running sets."""
    return f"{job_id}#{attempt}"


def attempts_of(job: dict[str, str]) -> list[dict[str, Any]]:
    """The attempts of a job read whole (HGETALL), oldest first."""
    found = [json.loads(value) for name, value in job.items() if name.startswith("attempt:")]
    return sorted(found, key=lambda attempt: attempt["attempt_id"])


def audio_ttl_s(timeout_ms: int) -> int:
    """How long a job's audio is kept from its creation: longer than the job can live (every attempt waiting,
    acked late and timing out), plus the retention window. The job's end does not touch it."""
    pending_ms = settings.JOB_PENDING_TIMEOUT_S * 1000
    per_attempt_ms = pending_ms + settings.JOB_ACK_TIMEOUT_S * 1000 + timeout_ms + CLAIM_TTL_MS
    return int((pending_ms + settings.JOB_MAX_ATTEMPTS * per_attempt_ms) / 1000) + settings.JOB_RETENTION_S


def create(pipe: Any, job_id: str, body_hash: str, fields: dict[str, str], audio: str, claim: str) -> None:
    """Queue `job_create.lua` on `pipe` (scripts.run_pipeline): it rides with the selection's reads."""
    k = keys()
    scripts.queue(
        pipe,
        "job_create",
        [*k.job_slot_keys(job_id), k.job_audio(job_id)],
        [
            job_id, body_hash, json.dumps(fields), audio, int(settings.JOB_PENDING_TIMEOUT_S * 1000), claim,
            CLAIM_TTL_MS, audio_ttl_s(int(fields["timeout_ms"])), orphan_check_ms(),
        ],
    )  # fmt: skip


async def dispatch(job_id: str, attempt: int, claim: str, node_id: str, pool: str, acks: bool) -> list[Any]:
    """SELECTING -> DISPATCHED on `node_id`, for the holder of the attempt's claim (job_dispatch.lua)."""
    return await scripts.run(
        "job_dispatch",
        keys().job_slot_keys(job_id),
        [
            str(attempt), claim, node_id, pool, "1" if acks else "0", int(settings.JOB_ACK_TIMEOUT_S * 1000),
            int(settings.JOB_TIMEOUT_S * 1000),
        ],
    )  # fmt: skip


def _step_args(
    attempt: int | str, expected: list[str], new: str, fields: dict[str, str], node: str, want_job: bool = False
) -> list[scripts.ScriptArg]:
    return [
        str(attempt), ",".join(expected), new, json.dumps(fields), node,
        str(settings.JOB_RETENTION_S) if new in TERMINAL else "", keys().jobs_ended_channel, "1" if want_job else "",
    ]  # fmt: skip


async def step(
    job_id: str, attempt: int | str, expected: list[str], new: str, fields: dict[str, str], *, node: str = ""
) -> list[Any]:
    """One fenced transition (job_step.lua)."""
    return await scripts.run("job_step", keys().job_slot_keys(job_id), _step_args(attempt, expected, new, fields, node))


def queue_step(
    pipe: Any, job_id: str, attempt: int | str, expected: list[str], new: str, fields: dict[str, str], *, node: str = "",
    want_job: bool = False,
) -> None:
    """The same queued on `pipe` (scripts.run_pipeline), to ride with other slots' commands. With `want_job`
    the reply ends with the whole job hash as the step left it (flat: field, value, ...)."""
    scripts.queue(pipe, "job_step", keys().job_slot_keys(job_id), _step_args(attempt, expected, new, fields, node, want_job))


async def fail(
    job_id: str, attempt: int | str, reason: str, message: str, node_id: str, node_error: dict[str, Any] | None = None
) -> list[Any]:
    """End the attempt as failed: retry (attempt + 1, SELECTING) or FAILED (job_fail_attempt.lua); the node's
    own error report, when it sent one, is kept on the attempt."""
    return await scripts.run(
        "job_fail_attempt",
        keys().job_slot_keys(job_id),
        [
            str(attempt), reason, settings.JOB_MAX_ATTEMPTS, "1" if reason in RETRYABLE else "0", node_id, message,
            settings.JOB_RETENTION_S, int(settings.JOB_PENDING_TIMEOUT_S * 1000), keys().jobs_ended_channel,
            json.dumps(node_error) if node_error else "", orphan_check_ms(),
        ],
    )  # fmt: skip


async def claim(job_id: str, attempt: int | str, token: str, mode: str) -> bool:
    """Take (`claim`) or give back (`release`) an attempt's selection claim (job_claim.lua)."""
    return bool(await scripts.run("job_claim", [keys().job(job_id)], [str(attempt), token, CLAIM_TTL_MS, mode]))


def release_slot(pipe: Any, node_id: str, job_id: str, attempt: int | str) -> None:
    """Queue the freeing of an attempt's slot on `pipe`: idempotent (ZREM), so it needs no script, and it may
    ride with the transition that ends the attempt (a node whose answer is stale held no slot for it)."""
    k = keys()
    slot = member(job_id, attempt)
    pipe.zrem(k.node_reservations(node_id), slot)
    pipe.zrem(k.node_running(node_id), slot)


async def free_slot(node_id: str, job_id: str, attempt: int | str) -> None:
    async with get_redis().pipeline(transaction=False) as pipe:
        release_slot(pipe, node_id, job_id, attempt)
        await pipe.execute()

