"""The job path: submit, select a node at random, reserve a slot atomically, dispatch, follow the node's
answers and the deadlines, retry elsewhere, end exactly once.

All live state is in Redis. A job is one hash (`sched:job:{id}`) changed only by fenced scripts
(`job_step.lua`, `job_fail_attempt.lua`); a node's capacity is two sorted sets of attempts scored by their
expiry (`node_reserve.lua`, `node_slot.lua`), so a slot whose holder vanished frees itself. Deadlines
(ack, job, pending) live in one sorted set that any instance's sweeper fires with Redis `TIME`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core import audit, metrics, scripts, stats
from core.redis import get_redis, keys
from jobs import reconcile, waiters
from jobs.models import FailureReason, JobState
from nodes import connections
from pools import services as pools
from pools.eligibility import eligible_pools, needed_languages

log = logging.getLogger(__name__)

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
# Job fields of PROTOCOL's job_assign that a submitter may give and we pass through unchanged.
PASS_THROUGH = (
    "dialect", "features", "mode", "lang_a", "lang_b", "auto_langs", "enable_streaming_asr",
    "partial_update_interval_ms", "padding_ms", "turn_id", "context_text", "group_id", "part_index",
    "is_manual_cut", "is_timeout_triggered", "is_max_duration_triggered",
)  # fmt: skip
# Bounds of the node's own error report kept on an attempt (code, message, details as JSON).
NODE_ERROR_CODE_MAX = 64
NODE_ERROR_MESSAGE_MAX = 2000
NODE_ERROR_DETAILS_MAX_BYTES = 4096
# What the real node says of a result's quality, kept with the result when present.
QUALITY_FIELDS = ("asr_quality_level", "quality_score", "reason_codes", "rerun_count", "segments_meta")
# Longer than a selection ever takes (a few reservation attempts), short enough that a selector that died
# mid-way does not hold a waiting job back for long.
CLAIM_TTL_MS = 5000
PIPELINE_SERVICES = {"use_asr": "asr", "use_nmt": "nmt", "use_tts": "tts", "use_semantic": "semantic", "use_tone": "tone"}


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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _member(job_id: str, attempt: int | str) -> str:
    return f"{job_id}#{attempt}"


def _orphan_check_ms() -> int:
    """When the sweeper first looks at a job entering SELECTING: as its placer's claim runs out, so a job whose
    placer died is taken over then (`_take_over_orphan`), not failed at its pending deadline; the sweep moves
    the entry on to that deadline afterwards."""
    return min(CLAIM_TTL_MS, int(settings.JOB_PENDING_TIMEOUT_S * 1000))


def _node_slot_keys(node_id: str) -> list[str]:
    k = keys()
    return [k.node_reservations(node_id), k.node_running(node_id)]


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


async def submit_job(request: dict[str, Any], *, idempotency_key: str = "", client_id: str = "") -> Submitted:
    """Create a job and start its first attempt.

    Steps: validate the audio; derive the job id from the idempotency key when given (so "exists?" and
    "create" are one atomic script); create the job with its audio; audit; select and dispatch.
    """
    decode_audio(request["audio"])
    pinned = request.get("node_id") or ""
    if pinned and not await get_redis().exists(keys().node_meta(pinned)):
        raise InvalidJob("UNKNOWN_NODE", f"no node {pinned!r} is registered", "node_id")
    body = {k: v for k, v in request.items() if k != "audio"}
    body_hash = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    if idempotency_key:
        job_id = "job-" + hashlib.sha256(f"{client_id}\n{idempotency_key}".encode()).hexdigest()[:24]
    else:
        job_id = f"job-{secrets.token_hex(12)}"
    fields = {
        "request": json.dumps(body),
        "src_lang": request["src_lang"],
        "tgt_lang": request["tgt_lang"],
        "pinned": pinned,
        "trace_id": request.get("trace_id") or f"t-{secrets.token_hex(8)}",
        "timeout_ms": str(request.get("timeout_ms") or int(settings.JOB_TIMEOUT_S * 1000)),
    }
    k = keys()
    pending_ms = int(settings.JOB_PENDING_TIMEOUT_S * 1000)
    # The creator holds attempt 1's selection claim from the start (see job_claim.lua).
    claim = secrets.token_hex(8)
    result = await scripts.run(
        "job_create",
        [k.job(job_id), k.job_audio(job_id)],
        [job_id, body_hash, json.dumps(fields), request["audio"], pending_ms, claim, CLAIM_TTL_MS],
    )
    if result[0] == "EXISTS":
        if result[1] != "1":
            raise JobConflict(job_id)
        metrics.JOBS_SUBMITTED.labels(result="duplicate").inc()
        return Submitted(job_id, created=False)
    metrics.JOBS_SUBMITTED.labels(result="created").inc()
    created_at = int(result[1])
    # The hash exactly as job_create.lua wrote it: no read back before placing it or auditing it.
    job = {
        **fields, "job_id": job_id, "body_hash": body_hash, "state": JobState.SELECTING, "attempt_id": "1",
        "node_id": "", "tried": "", "seq": "1", "created_at": str(created_at), "updated_at": str(created_at),
        "deadline": str(created_at + pending_ms), "deadline_kind": "pending",
    }  # fmt: skip
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.zadd(k.job_deadlines, {job_id: created_at + _orphan_check_ms()})
        pipe.zcard(k.jobs_pending)
        audit.add(pipe, "jobs", **job_audit_data(job_id, job))
        _, waiting, _ = await pipe.execute()
    if waiting:
        # Older jobs are waiting for capacity: queue behind them (first come, first served) and let the
        # pump, which serves the queue in order, place this one when its turn comes.
        await get_redis().zadd(k.jobs_pending, {job_id: created_at}, nx=True)
        await scripts.run("job_claim", [k.job(job_id)], ["1", claim, CLAIM_TTL_MS, "release"])
        await pump_pending()
    else:
        await _place_claimed(job_id, 1, job, claim, submitted_at=created_at, audio=request["audio"])
    return Submitted(job_id, created=True)


# --- selection, reservation, dispatch -------------------------------------------------------------------------


async def _barred_nodes(job: dict[str, str]) -> tuple[set[str], set[str]]:
    """Nodes tried before, split into those a retry must avoid (they answered the job, or timed out on it)
    and those that may take it again (every attempt they had ended with a WENT_AWAY reason)."""
    tried = set(filter(None, job.get("tried", "").split(",")))
    if not tried:
        return set(), set()
    attempts = [json.loads(raw) for raw in await get_redis().hvals(keys().job_attempts(job["job_id"]))]
    went_away = {a.get("node_id") for a in attempts if a.get("reason") in WENT_AWAY}
    barred = {a.get("node_id") for a in attempts if a.get("reason") not in WENT_AWAY}
    returning = (tried & went_away) - barred
    return tried - returning, returning


async def _candidates(job: dict[str, str], request: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """Random candidates (node, pool) from the eligible pools' members: untried nodes first, then nodes
    whose earlier attempt ended because they went away (the retry rule); cost independent of pool size
    (SRANDMEMBER of a fixed sample per pool). Also returns how many pools had any member (0 means
    POOL_EMPTY)."""
    barred, returning = await _barred_nodes(job)
    tried = barred | returning
    if job.get("pinned"):
        node_id = job["pinned"]
        return ([] if node_id in barred else [(node_id, "")]), 1
    k = keys()
    config = pools.cached_config()
    while True:
        eligible = eligible_pools(
            config.with_overflow(), job["src_lang"], job["tgt_lang"], request.get("lang_a"), request.get("lang_b")
        )
        # The configuration's version rides along with the samples: one round trip while it is current.
        async with get_redis().pipeline(transaction=False) as pipe:
            pipe.hget(k.pool_config, "version")
            for pool in eligible:
                pipe.srandmember(k.pool_members(pool.name), settings.JOB_SAMPLE_SIZE + len(tried))
            version, *samples = await pipe.execute()
        if int(version or 0) == config.version and config.version:
            break
        fresh = await pools.current_config()
        if fresh.version == config.version:
            break  # no configuration in Redis at all (version 0): the overflow pool alone
        config = fresh
    for pool in eligible:
        metrics.POOL_DEMAND.labels(pool=pool.name).inc()
    found: dict[str, str] = {}
    again: dict[str, str] = {}
    populated = 0
    for pool, members in zip(eligible, samples, strict=True):
        populated += bool(members)
        for node_id in members:
            if node_id not in tried:
                found.setdefault(node_id, pool.name)
            elif node_id in returning:
                again.setdefault(node_id, pool.name)
    candidates = list(found.items())
    random.shuffle(candidates)
    fallback = list(again.items())
    random.shuffle(fallback)
    return candidates + fallback, populated


async def select_and_dispatch(job_id: str, attempt: int, submitted_at: int | None = None) -> str:
    """Try to place one attempt: reserve a slot on a random candidate, mark the job RESERVED, then DISPATCHED
    with its deadline, then send the `job_assign`. Without capacity the job waits in the pending queue
    (first come, first served) until its pending deadline. Returns what happened."""
    k = keys()
    client = get_redis()
    job = await client.hgetall(k.job(job_id))
    if not job or job.get("state") != JobState.SELECTING or job.get("attempt_id") != str(attempt):
        return "stale"
    claim = secrets.token_hex(8)
    if not await scripts.run("job_claim", [k.job(job_id)], [str(attempt), claim, CLAIM_TTL_MS, "claim"]):
        metrics.JOB_CLAIMS.labels(result="busy").inc()
        return "busy"
    return await _place_claimed(job_id, attempt, job, claim, submitted_at)


async def _place_claimed(
    job_id: str, attempt: int, job: dict[str, str], claim: str, submitted_at: int | None = None, audio: str | None = None
) -> str:
    """`_place` under a claim this caller holds, giving it back unless the attempt left SELECTING (then the
    release would be a no-op: a claim only counts while its attempt is SELECTING)."""
    metrics.JOB_CLAIMS.labels(result="claimed").inc()
    outcome = None
    try:
        outcome = await _place(job_id, attempt, job, submitted_at, audio)
        return outcome
    finally:
        if outcome in (None, "pending"):
            # Lets the next pump try again now rather than when the claim expires.
            await scripts.run("job_claim", [keys().job(job_id)], [str(attempt), claim, CLAIM_TTL_MS, "release"])


async def _place(job_id: str, attempt: int, job: dict[str, str], submitted_at: int | None, audio: str | None) -> str:
    k = keys()
    client = get_redis()
    request = json.loads(job["request"])
    needed = sorted(needed_languages(job["src_lang"], job["tgt_lang"], request.get("lang_a"), request.get("lang_b")))
    required = [svc for flag, svc in PIPELINE_SERVICES.items() if request.get("pipeline", {}).get(flag, svc in ("asr", "nmt", "tts"))]
    candidates, populated = await _candidates(job, request)
    chosen: tuple[str, str] | None = None
    ttl = int((settings.JOB_ACK_TIMEOUT_S + settings.JOB_TIMEOUT_S + 5) * 1000)
    for node_id, pool in candidates:
        outcome = await scripts.run(
            "node_reserve",
            [*keys().node_keys(node_id), k.node_reservations(node_id), k.node_running(node_id), k.node_unavailable(node_id)],
            [_member(job_id, attempt), ttl, json.dumps(required), json.dumps(needed)],
        )
        metrics.RESERVATIONS.labels(result="ok" if outcome[0] == "OK" else "refused", reason=outcome[0].lower()).inc()
        if outcome[0] == "OK":
            chosen = (node_id, pool)
            break
    if chosen is None:
        reason = FailureReason.POOL_EMPTY if populated == 0 else FailureReason.NO_AVAILABLE_NODE
        (metrics.POOL_EMPTY if reason == FailureReason.POOL_EMPTY else metrics.NO_AVAILABLE_NODE).inc()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset(k.job(job_id), "waiting_reason", reason)
            pipe.zadd(k.jobs_pending, {job_id: int(job["created_at"])}, nx=True)
            await pipe.execute()
        return "pending"
    node_id, pool = chosen
    step = await _step(job_id, attempt, [JobState.SELECTING], JobState.RESERVED, {"node_id": node_id, "pool": pool})
    if step[0] != "OK":
        # Cancelled meanwhile, or placed by another process: this selector was paused past its claim and a
        # sweeper handed the job on. The reservation above then found that placement's own slot (same member)
        # when both chose the same node; it is not this selector's to free.
        if not (step[0] == "STALE" and step[1] in LIVE and step[2] == str(attempt) and step[3] == node_id):
            await _free_slot(node_id, job_id, attempt)
        return "stale"
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrem(k.jobs_pending, job_id)
        pipe.hmget(k.node_meta(node_id), ["supports_job_ack", "channel", "transport", "dispatch_url"])
        if audio is None:
            pipe.get(k.job_audio(job_id))
        _, meta, *stored = await pipe.execute()
    supports_ack = meta[0] == "1"
    now = _now_ms()
    timeout_ms = int(job.get("timeout_ms") or settings.JOB_TIMEOUT_S * 1000)
    if supports_ack:
        deadline, kind = now + int(settings.JOB_ACK_TIMEOUT_S * 1000), "ack"
    else:
        # The real node never acks: only the job timeout applies.
        deadline, kind = now + timeout_ms, "job"
    fields = {
        "deadline": str(deadline), "deadline_kind": kind, "dispatched_at": str(now),
        "ack_mode": "ack" if supports_ack else "first_message",
    }  # fmt: skip
    # DISPATCHED before the frame leaves: a node may answer at once, and through another instance its answer
    # can arrive before this one's next Redis call; an answer for a job still RESERVED would be refused.
    step = await _step(job_id, attempt, [JobState.RESERVED], JobState.DISPATCHED, fields)
    if step[0] != "OK":
        return "stale"  # cancelled meanwhile; the cancel freed the slot
    latency_ms = now - submitted_at if submitted_at is not None else None

    async def record() -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.zadd(k.job_deadlines, {job_id: deadline})
            stats.record_dispatch(pipe, pool or "pinned", latency_ms)
            audit.add(pipe, "jobs", **_attempt_audit_data(job_id, attempt, node_id, JobState.DISPATCHED, int(step[1]), started_at=now))
            await pipe.execute()

    if supports_ack:
        await record()
    else:
        # A node that never acks is running the job as far as anyone can tell once it is sent: its slot
        # counts as running from now (nodes that ack keep theirs reserved until the ack). Committed before
        # the frame leaves, so an instant answer's release comes after it; beside the pipeline, not after it.
        await asyncio.gather(record(), _commit_slot(node_id, job_id, attempt, deadline + 5000))
    frame = _job_assign_frame(job_id, attempt, job, request, audio if audio is not None else (stored[0] or ""))
    if not await _deliver(meta, frame):
        await fail_attempt(job_id, attempt, FailureReason.DISPATCH_FAILED, "the node could not be reached", node_id)
        return "dispatch_failed"
    if latency_ms is not None:
        metrics.DISPATCH_SECONDS.observe(latency_ms / 1000)
    context = {"job_id": job_id, "attempt_id": str(attempt), "node_id": node_id, "trace_id": job.get("trace_id")}
    log.debug("job dispatched", extra={"event": "job_dispatched", **context})
    return "dispatched"


def _job_assign_frame(job_id: str, attempt: int, job: dict[str, str], request: dict[str, Any], audio: str) -> dict[str, Any]:
    pipeline = {"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False}
    pipeline.update(request.get("pipeline") or {})
    frame: dict[str, Any] = {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": attempt,
        "session_id": request.get("session_id") or f"s-{job_id}",
        "utterance_index": request.get("utterance_index") or 0,
        "src_lang": job["src_lang"],
        "tgt_lang": job["tgt_lang"],
        "pipeline": pipeline,
        "audio": audio,
        "audio_format": request.get("audio_format", "opus"),
        "sample_rate": request.get("sample_rate", 16000),
        "trace_id": job["trace_id"],
    }
    for name in PASS_THROUGH:
        if request.get(name) is not None:
            frame[name] = request[name]
    return frame


async def _deliver(meta: list[str | None], frame: dict[str, Any]) -> bool:
    _, channel, transport, dispatch_url = meta
    if transport == "http" and dispatch_url:
        return await connections.post_frame(dispatch_url, frame)
    if not channel:
        return False
    try:
        return await connections.send_frame(channel, frame)
    except Exception:
        log.exception("frame not delivered", extra={"event": "dispatch_failed", "job_id": frame["job_id"]})
        return False


async def _step(job_id: str, attempt: int | str, expected: list[str], new: str, fields: dict[str, str], *, node: str = "") -> list[Any]:
    retention = str(settings.JOB_RETENTION_S) if new in TERMINAL else ""
    return await scripts.run(
        "job_step",
        [keys().job(job_id), keys().job_attempts(job_id)],
        [str(attempt), ",".join(expected), new, json.dumps(fields), node, retention],
    )


async def _commit_slot(node_id: str, job_id: str, attempt: int | str, expires_ms: int) -> None:
    await scripts.run("node_slot", _node_slot_keys(node_id), ["commit", _member(job_id, attempt), expires_ms])


async def _free_slot(node_id: str, job_id: str, attempt: int | str) -> None:
    await scripts.run("node_slot", _node_slot_keys(node_id), ["release", _member(job_id, attempt), 0])


# --- ends of attempts and jobs ----------------------------------------------------------------------------------


async def fail_attempt(
    job_id: str, attempt: int | str, reason: str, message: str, node_id: str = "", *, node_error: dict[str, Any] | None = None
) -> str:
    """End an attempt as failed: free its slot, tell the node to stop, retry on another node or fail.
    `node_error` is the node's own report (see `bounded_node_error`), kept on the attempt."""
    k = keys()
    result = await scripts.run(
        "job_fail_attempt",
        [k.job(job_id), k.job_attempts(job_id)],
        [
            str(attempt), reason, settings.JOB_MAX_ATTEMPTS, "1" if reason in RETRYABLE else "0", node_id, message,
            settings.JOB_RETENTION_S, int(settings.JOB_PENDING_TIMEOUT_S * 1000),
            json.dumps(node_error) if node_error else "",
        ],
    )
    if result[0] == "STALE":
        return "stale"
    holder = result[-1]
    if holder:
        await _free_slot(holder, job_id, attempt)
        if reason in (FailureReason.ACK_TIMEOUT, FailureReason.JOB_TIMEOUT):
            # Marked before the node hears of it: nothing it does after the cancel can race the mark.
            await _mark_stalled(holder, job_id, reason)
            await _send_cancel(job_id, holder, reason.lower())
    seq = int(result[2] if result[0] == "RETRY" else result[1])
    await _audit_attempt(
        job_id, attempt, holder, JobState.FAILED, seq, reason=reason, ended_at=int(result[-2]), node_error=node_error
    )
    trace_id = await get_redis().hget(k.job(job_id), "trace_id")
    context = {"job_id": job_id, "attempt_id": str(attempt), "reason": reason, "node_id": holder, "trace_id": trace_id}
    log.info("attempt failed", extra={"event": "attempt_failed", **context})
    if result[0] == "RETRY":
        metrics.RETRIES.labels(reason=reason).inc()
        new_attempt = int(result[1])
        await get_redis().zadd(k.job_deadlines, {job_id: _now_ms() + _orphan_check_ms()})
        await _audit_job(job_id)
        await select_and_dispatch(job_id, new_attempt)
        return "retry"
    await _ended(job_id, JobState.FAILED, reason)
    return "failed"


async def _mark_stalled(node_id: str, job_id: str, reason: str) -> None:
    """No new jobs for a node whose attempt timed out until it shows life (node_stalled.lua): a hung node
    would otherwise be sent job after job, each waiting out its own timeout."""
    if await scripts.run("node_stalled", [keys().node_meta(node_id)], []):
        log.warning("node stalled: no new jobs until it shows life", extra={
            "event": "node_stalled", "node_id": node_id, "job_id": job_id, "reason": reason})  # fmt: skip


async def _ended(job_id: str, state: str, reason: str = "", attempt_entry: dict[str, Any] | None = None) -> None:
    """After the transition to terminal `state`: clean-up, counters and the notice to long-polling clients in
    one round trip, then the audit entries (`attempt_entry`, when the ending attempt's own entry is still to
    be written, and the job's from the hash the first round trip returned) in one MULTI, so the mirror gets
    both or neither. A process that dies between the transition and the entries leaves the hash terminal
    and the mirror live: the reconciler (jobs/reconcile.py) appends the same entries from the hash."""
    k = keys()
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrem(k.job_deadlines, job_id)
        pipe.zrem(k.jobs_pending, job_id)
        pipe.expire(k.job_audio(job_id), settings.JOB_RETENTION_S)
        pipe.expire(k.job_partials(job_id), settings.JOB_RETENTION_S)
        pipe.expire(k.job_attempts(job_id), settings.JOB_RETENTION_S)
        stats.record_end(pipe, job_id, state, reason, succeeded=state == JobState.DONE)
        pipe.publish(k.jobs_ended_channel, job_id)
        pipe.zcard(k.jobs_pending)
        pipe.hgetall(k.job(job_id))
        *_, waiting, job = await pipe.execute()
    metrics.JOBS_ENDED.labels(state=state, reason=reason or "none").inc()
    context = {"event": "job_ended", "job_id": job_id, "attempt_id": job.get("attempt_id"), "node_id": job.get("node_id"),
               "trace_id": job.get("trace_id")}  # fmt: skip
    log.info("job ended %s", state, extra={**context, "reason": reason or None})
    entries = ([attempt_entry] if attempt_entry is not None else []) + ([job_audit_data(job_id, job)] if job else [])
    if entries:
        async with client.pipeline(transaction=True) as pipe:
            for entry in entries:
                audit.add(pipe, "jobs", **entry)
            await pipe.execute()
    if waiting:
        # A slot may have freed: give waiting jobs their chance in arrival order.
        connections.spawn(pump_pending())


async def _send_cancel(job_id: str, node_id: str, reason: str) -> None:
    client = get_redis()
    meta = await client.hmget(keys().node_meta(node_id), ["supports_job_ack", "channel", "transport", "dispatch_url"])
    trace = await client.hget(keys().job(job_id), "trace_id")
    frame = {"type": "job_cancel", "job_id": job_id, "reason": reason}
    if trace:
        frame["trace_id"] = trace
    await _deliver(meta, frame)


async def cancel_job(job_id: str, actor: str) -> dict[str, Any]:
    """Cancel a live job: CANCELLED, its slot freed and the node told (`job_cancel`)."""
    k = keys()
    job = await get_redis().hmget(k.job(job_id), ["state", "attempt_id", "node_id"])
    if job[0] is None:
        raise JobNotFound(job_id)
    if job[0] in LIVE:
        step = await _step(job_id, "", list(LIVE), JobState.CANCELLED, {"reason": "CANCELLED", "ended_at": str(_now_ms()),
                                                                        "cancelled_by": actor, "deadline": ""})
        if step[0] == "OK" and job[2]:
            await _free_slot(job[2], job_id, job[1])
            await _send_cancel(job_id, job[2], "cancelled")
            await _audit_attempt(
                job_id, job[1], job[2], JobState.CANCELLED, int(step[1]), reason=FailureReason.CANCELLED, ended_at=_now_ms()
            )
        if step[0] == "OK":
            await _ended(job_id, JobState.CANCELLED, FailureReason.CANCELLED)
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


# --- messages from nodes ------------------------------------------------------------------------------------------


async def acknowledged(job_id: str, attempt: int | str, node_id: str) -> bool:
    """The node took the job (`job_ack`, or its first message for nodes that do not ack): commit the slot,
    and from now only the job timeout applies."""
    k = keys()
    job = await get_redis().hmget(k.job(job_id), ["dispatched_at", "timeout_ms"])
    if job[0] is None:
        return False
    deadline = int(job[0]) + int(job[1] or settings.JOB_TIMEOUT_S * 1000)
    step = await _step(job_id, attempt, [JobState.DISPATCHED], JobState.ACKED,
                       {"acked_at": str(_now_ms()), "deadline": str(deadline), "deadline_kind": "job"}, node=node_id)
    if step[0] != "OK":
        return False
    await _commit_slot(node_id, job_id, attempt, deadline + 5000)
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.zadd(k.job_deadlines, {job_id: deadline})
        audit.add(pipe, "jobs", **_attempt_audit_data(job_id, attempt, node_id, JobState.ACKED, int(step[1])))
        await pipe.execute()
    return True


async def on_job_ack(message: Any, node_id: str) -> None:
    if not await acknowledged(message.job_id, message.attempt_id, node_id):
        metrics.STALE_NODE_MESSAGES.labels(type="job_ack").inc()


async def on_job_started(message: Any, node_id: str) -> None:
    await acknowledged(message.job_id, message.attempt_id, node_id)


async def on_asr_partial(message: Any, node_id: str) -> None:
    k = keys()
    job = await get_redis().hmget(k.job(message.job_id), ["state", "node_id", "attempt_id"])
    if job[0] not in (JobState.DISPATCHED, JobState.ACKED) or job[1] != node_id:
        metrics.STALE_NODE_MESSAGES.labels(type="asr_partial").inc()
        return
    if job[0] == JobState.DISPATCHED:
        await acknowledged(message.job_id, job[2], node_id)
    await get_redis().rpush(k.job_partials(message.job_id), json.dumps({"text": message.text, "is_final": message.is_final, "at": _now_ms()}))


async def on_job_result(message: Any, node_id: str) -> None:
    """A node's result. The real node also sends empty write-off results for other jobs it absorbed
    (`extra.reason: NO_TEXT_ASSIGNED`, the main job's attempt id): accepted for jobs it holds."""
    extra = message.extra or {}
    write_off = extra.get("reason") == "NO_TEXT_ASSIGNED"
    attempt: str = str(message.attempt_id)
    if write_off:
        held = await get_redis().hmget(keys().job(message.job_id), ["node_id", "attempt_id"])
        if held[0] != node_id:
            metrics.STALE_NODE_MESSAGES.labels(type="job_result").inc()
            return
        attempt = held[1] or attempt
    if message.success:
        await _succeeded(message, node_id, attempt)
        return
    error = message.error
    code = error.code if error else "PROCESSING_ERROR"
    if code == FailureReason.MODEL_NOT_AVAILABLE:
        service = (error.details or {}).get("service_id") or (error.details or {}).get("model_id") or ""
        await _mark_unavailable(node_id, service)
        reason = FailureReason.MODEL_NOT_AVAILABLE
    else:
        reason = FailureReason.NODE_ERROR
    outcome = await fail_attempt(
        message.job_id, attempt, reason, (error.message if error else "")[:500], node_id, node_error=bounded_node_error(error)
    )
    if outcome == "stale":
        metrics.STALE_NODE_MESSAGES.labels(type="job_result").inc()


def bounded_node_error(error: Any) -> dict[str, Any]:
    """The node's own error report as kept on the attempt: its code, message and details, each bounded so a
    runaway stack trace cannot bloat the job hash or the audit rows."""
    if error is None:
        return {"code": "PROCESSING_ERROR", "message": "the node reported a failure without an error", "details": None}
    details = error.details
    size = len(json.dumps(details, default=str))
    if size > NODE_ERROR_DETAILS_MAX_BYTES:
        details = {"truncated": True, "bytes": size}
    return {"code": str(error.code)[:NODE_ERROR_CODE_MAX], "message": str(error.message)[:NODE_ERROR_MESSAGE_MAX], "details": details}


async def _succeeded(message: Any, node_id: str, attempt: str) -> None:
    result = {
        "text_asr": message.text_asr, "text_translated": message.text_translated, "tts_audio": message.tts_audio,
        "tts_format": message.tts_format, "extra": message.extra, "processing_time_ms": message.processing_time_ms,
    }  # fmt: skip
    for name in QUALITY_FIELDS:
        if getattr(message, name) is not None:
            result[name] = getattr(message, name)
    now = _now_ms()
    step = await _step(message.job_id, attempt, [JobState.DISPATCHED, JobState.ACKED], JobState.DONE,
                       {"result": json.dumps(result), "ended_at": str(now), "deadline": ""}, node=node_id)
    if step[0] != "OK":
        metrics.STALE_NODE_MESSAGES.labels(type="job_result").inc()
        return
    await _free_slot(node_id, message.job_id, attempt)
    entry = _attempt_audit_data(message.job_id, attempt, node_id, JobState.DONE, int(step[1]), ended_at=now)
    await _ended(message.job_id, JobState.DONE, attempt_entry=entry)


async def _mark_unavailable(node_id: str, service_id: str) -> None:
    """MODEL_NOT_AVAILABLE: selection avoids that service's type on this node for a while."""
    capabilities = await get_redis().hgetall(keys().node_capabilities(node_id))
    kind = next(
        (
            cap_kind
            for cap_kind, raw in capabilities.items()
            if any(s.get("service_id") == service_id for s in json.loads(raw).get("services", []))
        ),
        service_id,
    )
    until = _now_ms() + int(settings.JOB_MODEL_UNAVAILABLE_S * 1000)
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.hset(keys().node_unavailable(node_id), kind, until)
        pipe.expire(keys().node_unavailable(node_id), int(settings.JOB_MODEL_UNAVAILABLE_S) + 1)
        await pipe.execute()
    log.warning("service marked unavailable", extra={"event": "model_not_available", "node_id": node_id, "reason": kind})


async def node_went_offline(node_id: str) -> None:
    """Every attempt the node held ends with NODE_OFFLINE and goes elsewhere."""
    k = keys()
    client = get_redis()
    members = set(await client.zrange(k.node_reservations(node_id), 0, -1)) | set(await client.zrange(k.node_running(node_id), 0, -1))
    for member in members:
        job_id, _, attempt = member.rpartition("#")
        await fail_attempt(job_id, attempt, FailureReason.NODE_OFFLINE, "the node went offline", node_id)


async def node_reconnected(node_id: str) -> int:
    """The node registered on a new connection while it held attempts: its old socket is gone (superseded, or
    lost with the web process that served it, which then never reported the close). It may still send their
    results over the new socket; what has not come within NODE_RECONNECT_GRACE_S ends NODE_OFFLINE and goes
    to another node, instead of waiting out the job timeout. Returns how many attempts got the grace."""
    k = keys()
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrange(k.node_reservations(node_id), 0, -1)
        pipe.zrange(k.node_running(node_id), 0, -1)
        reserved, running = await pipe.execute()
    grace_ms = int(settings.NODE_RECONNECT_GRACE_S * 1000)
    shortened = 0
    for member in set(reserved) | set(running):
        job_id, _, attempt = member.rpartition("#")
        deadline = await scripts.run("job_deadline_shorten", [k.job(job_id)], [attempt, node_id, grace_ms, "reconnect"])
        if deadline:
            await client.zadd(k.job_deadlines, {job_id: int(deadline)})
            shortened += 1
    if shortened:
        log.info("attempts of a reconnected node given a grace", extra={
            "event": "node_reconnected", "node_id": node_id, "reason": f"{shortened} attempt(s)"})  # fmt: skip
    return shortened


# --- deadlines and the pending queue -----------------------------------------------------------------------------


async def sweep_deadlines(limit: int = 500) -> int:
    """Fire every job deadline that has passed by Redis's clock: ack and job timeouts end the attempt
    (retry elsewhere), a pending deadline fails the job with NO_AVAILABLE_NODE or POOL_EMPTY. Safe from any
    instance: each transition is fenced by attempt, the index only advisory."""
    k = keys()
    client = get_redis()
    seconds, micros = await client.time()
    now = seconds * 1000 + micros // 1000
    due = await client.zrangebyscore(k.job_deadlines, "-inf", now, start=0, num=limit, withscores=True)
    fired = 0
    for job_id, score in due:
        job = await client.hmget(
            k.job(job_id), ["state", "attempt_id", "node_id", "deadline", "deadline_kind", "waiting_reason", "claim", "claim_until"]
        )
        state, attempt, node_id, deadline, kind, waiting, claim, claim_until = job
        if state is None or state in TERMINAL or not deadline:
            await scripts.run("deadline_settle", [k.job_deadlines], [job_id, score, ""])
            continue
        if state == JobState.SELECTING and int(deadline) > now:
            await _take_over_orphan(job_id, attempt, claim or "", int(claim_until or 0), now)
        if int(deadline) > now:
            await scripts.run("deadline_settle", [k.job_deadlines], [job_id, score, int(deadline)])
            continue
        fired += 1
        if kind == "pending" and state == JobState.SELECTING:
            reason = waiting or FailureReason.NO_AVAILABLE_NODE
            message = "no node serves these languages" if reason == FailureReason.POOL_EMPTY else "no node had capacity in time"
            await fail_attempt(job_id, attempt, reason, await _earlier_causes(job_id, attempt) + message, "")
            continue
        if kind == "ack" and state == JobState.DISPATCHED:
            metrics.TIMEOUTS.labels(kind="ack").inc()
            await fail_attempt(job_id, attempt, FailureReason.ACK_TIMEOUT, "no job_ack in time", node_id)
            continue
        if kind == "job" and state in (JobState.DISPATCHED, JobState.ACKED):
            metrics.TIMEOUTS.labels(kind="job").inc()
            await fail_attempt(job_id, attempt, FailureReason.JOB_TIMEOUT, "no result in time", node_id)
            continue
        if kind == "reconnect" and state in (JobState.DISPATCHED, JobState.ACKED):
            await fail_attempt(job_id, attempt, FailureReason.NODE_OFFLINE, "no result after the node reconnected", node_id)
            continue
        if state == JobState.RESERVED:
            # The instance that reserved died before dispatching.
            await fail_attempt(job_id, attempt, FailureReason.DISPATCH_FAILED, "dispatch did not complete", node_id)
    return fired


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
    entries = sorted((json.loads(raw) for raw in await get_redis().hvals(keys().job_attempts(job_id))), key=lambda a: a["attempt_id"])
    causes = [
        f"attempt {a['attempt_id']}" + (f" ({a['node_id']})" if a.get("node_id") else "") + f": {a.get('reason')}"
        for a in entries
        if str(a["attempt_id"]) != attempt and a.get("reason")
    ]
    return "".join(f"{cause}; " for cause in causes) + f"attempt {attempt}: "


async def pump_pending(limit: int = 100) -> int:
    """Offer capacity to waiting jobs, oldest first. Once a job finds no slot, later jobs with the same
    needs are skipped this round: a slot that frees while the scan passes over must go to the older job."""
    client = get_redis()
    waiting = await client.zrange(keys().jobs_pending, 0, limit - 1)
    blocked: set[tuple[str | None, ...]] = set()
    placed = 0
    for job_id in waiting:
        state, attempt, src, tgt, pinned = await client.hmget(
            keys().job(job_id), ["state", "attempt_id", "src_lang", "tgt_lang", "pinned"]
        )
        if state != JobState.SELECTING:
            await client.zrem(keys().jobs_pending, job_id)
            continue
        needs = (src, tgt, pinned)
        if needs in blocked:
            continue
        outcome = await select_and_dispatch(job_id, int(attempt))
        if outcome == "dispatched":
            placed += 1
        else:
            blocked.add(needs)
    return placed


# --- reads ---------------------------------------------------------------------------------------------------------


async def get_job(job_id: str) -> dict[str, Any]:
    k = keys()
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(k.job(job_id))
        pipe.lrange(k.job_partials(job_id), 0, -1)
        pipe.hvals(k.job_attempts(job_id))
        job, partials, attempts = await pipe.execute()
    if not job:
        return await _from_mirror(job_id)
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
        "attempts": sorted((json.loads(a) for a in attempts), key=lambda a: a["attempt_id"]),
    }
    for entry in view["attempts"]:
        if job.get(f"node_error:{entry['attempt_id']}"):
            entry["node_error"] = json.loads(job[f"node_error:{entry['attempt_id']}"])
    if job.get("result"):
        view["result"] = json.loads(job["result"])
    if partials:
        view["partials"] = [json.loads(p) for p in partials]
    if job.get("error") and job["state"] == JobState.FAILED:
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
        while True:
            # Cleared before the read: a notice that arrives while the read is in flight is kept.
            ended.clear()
            job = await get_job(job_id)
            remaining = deadline - time.monotonic()
            if job["state"] in TERMINAL or remaining <= 0:
                return job
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ended.wait(), min(remaining, waiters.SAFETY_POLL_S))


# --- audit -----------------------------------------------------------------------------------------------------------


async def _audit_job(job_id: str) -> None:
    job = await get_redis().hgetall(keys().job(job_id))
    if job:
        await audit.record("jobs", **job_audit_data(job_id, job))


def job_audit_data(job_id: str, job: dict[str, str]) -> dict[str, Any]:
    """The audit entry of a job from its live hash."""
    request = json.loads(job.get("request") or "{}")
    return dict(
        type="job", job_id=job_id, seq=int(job.get("seq") or 0), state=job["state"], reason=job.get("reason", ""),
        src_lang=job.get("src_lang", ""), tgt_lang=job.get("tgt_lang", ""), pool=job.get("pool", ""),
        node_id=job.get("node_id", ""), attempt_id=int(job.get("attempt_id") or 1),
        session_id=request.get("session_id") or "", utterance_index=request.get("utterance_index"),
        trace_id=job.get("trace_id", ""), pinned_node=job.get("pinned", ""), created_at=int(job["created_at"]),
        ended_at=int(job["ended_at"]) if job.get("ended_at") else None,
        error=json.loads(job["error"]) if job.get("error") else None,
        timings={name: int(job[name]) for name in ("dispatched_at", "acked_at", "ended_at") if job.get(name)},
    )


async def _audit_attempt(
    job_id: str, attempt: int | str, node_id: str, state: str, seq: int, *, reason: str = "",
    started_at: int | None = None, ended_at: int | None = None, node_error: dict[str, Any] | None = None,
) -> None:
    await audit.record(
        "jobs",
        **_attempt_audit_data(
            job_id, attempt, node_id, state, seq, reason=reason, started_at=started_at, ended_at=ended_at, node_error=node_error
        ),
    )


def _attempt_audit_data(
    job_id: str, attempt: int | str, node_id: str, state: str, seq: int, *, reason: str = "",
    started_at: int | None = None, ended_at: int | None = None, node_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An attempt's change for the audit trail (the live attempt list changed in the transition's own
    script). `seq` is the one that script returned, so two changes never share one."""
    data: dict[str, Any] = {"type": "attempt", "job_id": job_id, "attempt_id": int(attempt), "seq": seq,
                            "node_id": node_id, "state": state, "reason": reason, "ended_at": ended_at}
    if started_at is not None:
        data["started_at"] = started_at
    if node_error is not None:
        data["node_error"] = node_error
    return data
