"""What nodes say about their jobs: acknowledgements, partial text, results (success or error), and a node
going away. Each message is fenced by attempt and node in its transition's script, so a late, repeated or
foreign message changes nothing.

A result costs one round trip: the DONE transition (with its audit entries, retention and the notice to
long-polling clients inside the script) and the freeing of the node's slot ride in one pipeline. Freeing the slot needs no fence: a node that answers an attempt no longer holds its slot, and
freeing a slot already freed changes nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings

from core import metrics, scripts
from core.redis import get_redis, keys
from jobs import transitions, waiters
from jobs.models import FailureReason, JobState
from jobs.placement import ended, fail_attempt

log = logging.getLogger(__name__)

# Bounds of the node's own error report kept on an attempt (code, message, details as JSON).
NODE_ERROR_CODE_MAX = 64
NODE_ERROR_MESSAGE_MAX = 2000
NODE_ERROR_DETAILS_MAX_BYTES = 4096
# What the real node says of a result's quality, kept with the result when present.
QUALITY_FIELDS = ("asr_quality_level", "quality_score", "reason_codes", "rerun_count", "segments_meta")


async def acknowledged(job_id: str, attempt: int | str, node_id: str) -> bool:
    """The node took the job (`job_ack`, or its first message for nodes that do not ack): commit the slot,
    and from now only the job timeout applies (job_step.lua sets that deadline from the dispatch time)."""
    step = await transitions.step(job_id, attempt, [JobState.DISPATCHED], JobState.ACKED, {}, node=node_id)
    if step[0] != "OK":
        return False
    k = keys()
    await scripts.run(
        "node_slot",
        [k.node_reservations(node_id), k.node_running(node_id)],
        ["commit", transitions.member(job_id, step[5]), int(step[6]) + 5000],
    )
    return True


async def on_job_ack(message: Any, node_id: str) -> None:
    if not await acknowledged(message.job_id, message.attempt_id, node_id):
        metrics.STALE_NODE_MESSAGES.labels(type="job_ack").inc()


async def on_job_started(message: Any, node_id: str) -> None:
    await acknowledged(message.job_id, message.attempt_id, node_id)


async def on_asr_partial(message: Any, node_id: str) -> None:
    k = keys()
    job = await get_redis().hmget(k.job(message.job_id), ["state", "node_id", "attempt_id", "timeout_ms"])
    if job[0] not in (JobState.DISPATCHED, JobState.ACKED) or job[1] != node_id:
        metrics.STALE_NODE_MESSAGES.labels(type="asr_partial").inc()
        return
    if job[0] == JobState.DISPATCHED:
        await acknowledged(message.job_id, job[2], node_id)
    partial = json.dumps({"text": message.text, "is_final": message.is_final, "at": transitions.now_ms()})
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.rpush(k.job_partials(message.job_id), partial)
        # Expires by itself like the audio (the job's end does not touch it); the count tells readers to look.
        pipe.expire(k.job_partials(message.job_id), transitions.audio_ttl_s(int(job[3] or settings.JOB_TIMEOUT_S * 1000)))
        pipe.hincrby(k.job(message.job_id), "partials", 1)
        # Session sockets relay partials as they come (jobs/waiters.py); in the same round trip.
        pipe.publish(k.jobs_progress_channel, message.job_id)
        await pipe.execute()


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
    job_id = message.job_id

    # A client of this process waits on the job: the step returns the ended job, handed to it without a read.
    local = waiters.waited_here(job_id)

    def build(pipe: Any) -> None:
        transitions.queue_step(
            pipe, job_id, attempt, [JobState.DISPATCHED, JobState.ACKED], JobState.DONE, {"result": json.dumps(result)},
            node=node_id, want_job=local,
        )  # fmt: skip
        transitions.release_slot(pipe, node_id, job_id, attempt)

    step, *_ = await scripts.run_pipeline("job_done", build)
    if step[0] != "OK":
        metrics.STALE_NODE_MESSAGES.labels(type="job_result").inc()
        return
    if len(step) > 8:
        waiters.hand_over(job_id, dict(zip(step[8][::2], step[8][1::2], strict=True)))
    ended(job_id, JobState.DONE, attempt=attempt, node_id=node_id, trace_id=step[7])


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
    until = transitions.now_ms() + int(settings.JOB_MODEL_UNAVAILABLE_S * 1000)
    async with get_redis().pipeline(transaction=False) as pipe:
        pipe.hset(keys().node_unavailable(node_id), kind, until)
        pipe.expire(keys().node_unavailable(node_id), int(settings.JOB_MODEL_UNAVAILABLE_S) + 1)
        # Tells node_reserve.lua that marks may be live; every mark lasts as long, so the newest is the latest.
        pipe.hset(keys().node_meta(node_id), "unavailable_until", until)
        await pipe.execute()
    log.warning("service marked unavailable", extra={"event": "model_not_available", "node_id": node_id, "reason": kind})


async def node_went_offline(node_id: str) -> None:
    """Every attempt the node held ends with NODE_OFFLINE and goes elsewhere."""
    k = keys()
    client = get_redis()
    members = set(await client.zrange(k.node_reservations(node_id), 0, -1)) | set(await client.zrange(k.node_running(node_id), 0, -1))
    for held in members:
        job_id, _, attempt = held.rpartition("#")
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
    for held in set(reserved) | set(running):
        job_id, _, attempt = held.rpartition("#")
        deadline = await scripts.run("job_deadline_shorten", [k.job(job_id)], [attempt, node_id, grace_ms, "reconnect"])
        if deadline:
            # Earlier than the deadline the index holds for it: moved now.
            await client.zadd(k.job_deadlines(k.job_shard(job_id)), {job_id: int(deadline)})
            shortened += 1
    if shortened:
        log.info("attempts of a reconnected node given a grace", extra={
            "event": "node_reconnected", "node_id": node_id, "reason": f"{shortened} attempt(s)"})  # fmt: skip
    return shortened
