"""Sessions of the lingua clients: open one (limits, registry, audit), turn an utterance into jobs through
the job service, follow a job to its end, render what the client receives, close.

A session lives on the socket that opened it (sessions/session.py holds its buffers); what other instances
and operators need to see of it is in Redis (sessions/registry.py) and the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core import audit, metrics
from jobs import services as jobs
from jobs import waiters
from jobs.languages import ISO_639_1
from jobs.models import JobState
from sessions import registry
from sessions.schemas import SessionInit

log = logging.getLogger(__name__)

# Optional session_init fields the node gets in every job_assign of the session, unchanged.
PASSED_TO_JOBS = ("dialect", "features", "mode", "lang_a", "lang_b", "auto_langs", "enable_streaming_asr", "partial_update_interval_ms")
# Node result fields (in `extra`) relayed in translation_result as the old server did.
RESULT_EXTRAS = (
    "part_index", "service_timings", "network_timings", "asr_quality_level", "reason_codes", "quality_score",
    "rerun_count", "segments_meta",
)  # fmt: skip


class SessionRefused(Exception):
    """A session or a message the client must be told about; `code` goes in the `error` frame."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}


@dataclass
class SessionContext:
    session_id: str
    uid: str
    bucket: str
    api_key_id: str
    init: SessionInit
    trace_id: str
    opened_at_ms: int
    origin: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"utterances": 0, "results": 0, "missing": 0, "in_flight": 0})

    @property
    def two_way(self) -> bool:
        return self.init.mode == "two_way_auto"

    def live_fields(self) -> dict[str, Any]:
        return {**self.counts, "last_activity": int(time.time() * 1000)}


def _check_language(value: str | None, name: str, *, auto: bool = False) -> None:
    if value is None or (auto and value == "auto") or value in ISO_639_1:
        return
    raise SessionRefused("INVALID_MESSAGE", f"unknown language {value[:16]!r}", {"field": name})


async def open_session(init: SessionInit, *, api_key_id: str, origin: str = "") -> SessionContext:
    """Open a session: check its languages, claim a fresh session id, take a slot of the key (refused past
    SESSIONS_MAX_PER_KEY), list it for the admin, audit it."""
    _check_language(init.src_lang, "src_lang", auto=True)
    _check_language(init.tgt_lang, "tgt_lang")
    _check_language(init.lang_a, "lang_a")
    _check_language(init.lang_b, "lang_b")
    if init.mode == "two_way_auto" and not (init.lang_a and init.lang_b):
        raise SessionRefused("INVALID_MESSAGE", "two_way_auto needs lang_a and lang_b", {"field": "lang_a"})
    bucket = api_key_id or registry.OPEN_BUCKET
    session_id = await registry.claim_session_id()
    granted, held = await registry.acquire_slot(bucket, session_id)
    if not granted:
        await registry.release(bucket, session_id)
        raise SessionRefused(
            "TOO_MANY_SESSIONS",
            f"this key already holds {held} open sessions; the limit is {settings.SESSIONS_MAX_PER_KEY}",
            {"limit": settings.SESSIONS_MAX_PER_KEY},
        )
    ctx = SessionContext(
        session_id=session_id, uid=secrets.token_hex(16), bucket=bucket, api_key_id=api_key_id, init=init,
        trace_id=init.trace_id or f"t-{secrets.token_hex(8)}", opened_at_ms=int(time.time() * 1000), origin=origin or "",
    )  # fmt: skip
    opened = {
        "uid": ctx.uid, "api_key_id": api_key_id, "client_version": init.client_version, "platform": init.platform,
        "mode": init.mode or "one_way", "src_lang": init.src_lang, "tgt_lang": init.tgt_lang, "lang_a": init.lang_a or "",
        "lang_b": init.lang_b or "", "trace_id": ctx.trace_id, "origin": ctx.origin, "instance": settings.INSTANCE_ID,
        "opened_at": ctx.opened_at_ms,
    }  # fmt: skip
    await registry.publish(session_id, {**opened, **ctx.live_fields()}, {"type": "opened", "session_id": session_id, **opened})
    metrics.SESSIONS_OPEN.inc()
    log.info("session opened", extra={"event": "session_opened", "session_id": session_id, "trace_id": ctx.trace_id})
    return ctx


async def close_session(ctx: SessionContext, reason: str) -> None:
    """Free the session's slot and listing and write its audit row's end. Safe to call once per session."""
    metrics.SESSIONS_OPEN.dec()
    closed_at = int(time.time() * 1000)
    await audit.record(
        "sessions", type="closed", uid=ctx.uid, session_id=ctx.session_id, opened_at=ctx.opened_at_ms, closed_at=closed_at,
        close_reason=reason[:64], utterances=ctx.counts["utterances"], results=ctx.counts["results"], missing=ctx.counts["missing"],
    )  # fmt: skip
    await registry.release(ctx.bucket, ctx.session_id)
    log.info(
        "session closed",
        extra={"event": "session_closed", "session_id": ctx.session_id, "trace_id": ctx.trace_id, "reason": reason[:64]},
    )


# --- utterances become jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceJob:
    """What the job service needs for one utterance; `fields` are the per-utterance job fields (cut flags,
    padding, the one-shot client's pipeline...)."""

    index: int
    audio: str
    src_lang: str
    tgt_lang: str
    audio_format: str = "opus"
    sample_rate: int = 16000
    fields: dict[str, Any] = field(default_factory=dict)
    cut_at: float = field(default_factory=time.monotonic)


def targets(ctx: SessionContext, job: UtteranceJob) -> list[str]:
    """The target languages of an utterance: one job each. A 1:1 session has one; two_way_auto also one,
    with `src_lang: auto` and the node picking the direction between lang_a and lang_b."""
    return [job.tgt_lang]


def job_request(ctx: SessionContext, job: UtteranceJob, tgt_lang: str) -> dict[str, Any]:
    init = ctx.init
    request: dict[str, Any] = {
        "src_lang": "auto" if ctx.two_way else job.src_lang, "tgt_lang": tgt_lang, "audio": job.audio,
        "audio_format": job.audio_format, "sample_rate": job.sample_rate, "session_id": ctx.session_id,
        "utterance_index": job.index, "trace_id": ctx.trace_id,
    }  # fmt: skip
    for name in PASSED_TO_JOBS:
        value = getattr(init, name)
        if value is not None:
            request[name] = value
    request.update({name: value for name, value in job.fields.items() if value is not None})
    return request


async def submit_utterance(ctx: SessionContext, job: UtteranceJob) -> list[str]:
    """One job per target language through the job service, idempotent per (session, index, target): a
    repeated submission (a one-shot client resending an index with the same audio) gets the same job."""
    job_ids = []
    for tgt in targets(ctx, job):
        submitted = await jobs.submit_job(
            job_request(ctx, job, tgt), idempotency_key=f"{job.index}/{tgt}", client_id=f"session:{ctx.uid}"
        )
        job_ids.append(submitted.job_id)
    return job_ids


async def follow_job(job_id: str, on_partial: Callable[[dict[str, Any]], Awaitable[Any]]) -> dict[str, Any]:
    """The job once it ended, relaying each partial result to `on_partial` as it comes. Wakes on the job's
    end or progress notice (jobs/waiters.py), wherever the node's answer arrived; re-reads at least every
    SAFETY_POLL_S, since notices may be lost."""
    relayed = 0
    async with waiters.watch(job_id) as changed:
        while True:
            changed.clear()
            view = await jobs.get_job(job_id)
            partials = view.get("partials") or []
            for partial in partials[relayed:]:
                await on_partial(partial)
            relayed = len(partials)
            if view["state"] in jobs.TERMINAL:
                return view
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), waiters.SAFETY_POLL_S)


# --- frames for the client ----------------------------------------------------------------------------------------


def group_id(ctx: SessionContext, index: int) -> str:
    # The client sends tts_started / tts_play_ended only for results that carry one.
    return f"group_{ctx.session_id}_{index}"


def result_frame(ctx: SessionContext, index: int, view: dict[str, Any]) -> dict[str, Any]:
    """`translation_result` for a job that ended DONE with something to show, else `missing_result`."""
    result = view.get("result") or {}
    extra = result.get("extra") or {}
    texts = (result.get("text_asr") or "", result.get("text_translated") or "", result.get("tts_audio") or "")
    if view["state"] != JobState.DONE:
        error = view.get("error") or {}
        return missing_frame(ctx, index, error.get("code") or view.get("reason") or view["state"], view["job_id"], error.get("message"))
    if not any(texts):
        # Nothing to play or show (silence, or the node merged this audio into another utterance).
        return missing_frame(ctx, index, str(extra.get("reason") or "silence_detected"), view["job_id"])
    timings = dict(view.get("timings") or {})
    if result.get("processing_time_ms") is not None:
        timings["processing_time_ms"] = result["processing_time_ms"]
    frame: dict[str, Any] = {
        "type": "translation_result", "session_id": ctx.session_id, "utterance_index": index, "job_id": view["job_id"],
        "text_asr": texts[0], "text_translated": texts[1], "tts_audio": texts[2],
        "tts_format": result.get("tts_format") or "pcm16", "trace_id": ctx.trace_id,
        "group_id": str(extra.get("group_id") or group_id(ctx, index)), "timings": timings,
        "scheduler_sent_at_ms": int(time.time() * 1000),
    }  # fmt: skip
    if extra:
        frame["extra"] = extra
    for name in RESULT_EXTRAS:
        if extra.get(name) is not None:
            frame[name] = extra[name]
    return frame


def missing_frame(ctx: SessionContext, index: int, reason: str, job_id: str | None = None, message: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "missing_result", "session_id": ctx.session_id, "utterance_index": index, "reason": reason,
        "created_at_ms": int(time.time() * 1000), "trace_id": ctx.trace_id,
    }  # fmt: skip
    if job_id:
        frame["job_id"] = job_id
    if message:
        frame["message"] = message
    return frame


def partial_frame(ctx: SessionContext, index: int, job_id: str, partial: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "asr_partial", "session_id": ctx.session_id, "utterance_index": index, "job_id": job_id,
        "text": partial.get("text") or "", "is_final": bool(partial.get("is_final")), "trace_id": ctx.trace_id,
    }  # fmt: skip
