"""REST endpoints for jobs (PROTOCOL.md section 3): submit, read with long-poll, cancel, and history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import redis
from channels.db import database_sync_to_async
from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.responses import Status
from pydantic import ConfigDict, StrictBool, StrictInt

from access.auth import actor_of, require
from access.models import Scope
from core.api_errors import ApiError
from core.timefmt import from_epoch_ms, iso
from jobs import history, services
from jobs.languages import ISO_639_1
from jobs.models import JobState

router = Router(tags=["jobs"])

MAX_WAIT_S = 30.0


class PipelineIn(Schema):
    use_asr: bool = True
    use_nmt: bool = True
    use_tts: bool = True
    use_semantic: bool = False
    use_tone: bool = False


class JobIn(Schema):
    # Fields not named here are dropped, never stored or sent on: the node reads only what PROTOCOL lists.
    model_config = ConfigDict(extra="ignore")

    src_lang: str = Field(description="ISO 639-1 code, or `auto`")
    tgt_lang: str = Field(description="ISO 639-1 code")
    audio: str = Field(description="base64; Opus packets with uint16 LE length prefixes, or PCM16")
    audio_format: Literal["opus", "pcm16"] = "opus"
    sample_rate: int = Field(16000, ge=8000, le=48000)
    pipeline: PipelineIn = Field(default_factory=PipelineIn)
    session_id: str | None = Field(None, max_length=128)
    utterance_index: int | None = Field(None, ge=0)
    trace_id: str | None = Field(None, max_length=128)
    node_id: str | None = Field(None, max_length=64, description="pin the job to this node")
    timeout_ms: int | None = Field(None, ge=100, le=600_000)
    # The optional job_assign fields (PROTOCOL, section 1), passed to the node unchanged. Strict types: the
    # node's own parser would refuse "true" for a bool or "500" for a number, so the API refuses them first.
    dialect: str | None = Field(None, min_length=1, max_length=32)
    features: dict[str, StrictBool] | None = Field(None, max_length=32, description="feature flags, e.g. emotion_detection")
    mode: Literal["one_way", "two_way_auto"] | None = None
    lang_a: str | None = Field(None, description="ISO 639-1; with `lang_b`, the two languages of a two-way session")
    lang_b: str | None = Field(None, description="ISO 639-1")
    auto_langs: list[str] | None = Field(None, max_length=16, description="ISO 639-1 codes the language detection may choose")
    enable_streaming_asr: StrictBool | None = None
    partial_update_interval_ms: StrictInt | None = Field(None, ge=50, le=60_000)
    padding_ms: StrictInt | None = Field(None, ge=0, le=10_000)
    turn_id: str | None = Field(None, min_length=1, max_length=128)
    context_text: str | None = Field(None, max_length=4000)
    group_id: str | None = Field(None, min_length=1, max_length=128)
    part_index: StrictInt | None = Field(None, ge=0, le=1_000_000)
    is_manual_cut: StrictBool | None = None
    is_timeout_triggered: StrictBool | None = None
    is_max_duration_triggered: StrictBool | None = None


def _wait(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ApiError(400, "INVALID_WAIT", f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}", {"field": "wait"})
    return seconds


def _check_languages(payload: JobIn) -> None:
    named = [(name, getattr(payload, name, None)) for name in ("src_lang", "tgt_lang", "lang_a", "lang_b")]
    named += [(f"auto_langs.{index}", value) for index, value in enumerate(payload.auto_langs or ())]
    for field, value in named:
        if value is None or (field == "src_lang" and value == "auto") or value in ISO_639_1:
            continue
        message = f"unknown language {value[:16]!r}"
        if value.lower() in ISO_639_1:
            message += f": codes are lower case ISO 639-1, did you mean {value.lower()!r}?"
        raise ApiError(400, "UNKNOWN_LANGUAGE", message, {"field": field})


def _epoch_to_iso(value: Any) -> str | None:
    return iso(from_epoch_ms(value))


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it: every point in time as ISO 8601 UTC with milliseconds (docs/time.md), and
    the latencies a client asks about as `durations_ms`. Redis keeps epoch milliseconds; this is the edge."""
    view = dict(job)
    timings = job.get("timings") or {}
    if "created_at" in view:
        view["created_at"] = _epoch_to_iso(view["created_at"])
    if "timings" in job:
        view["timings"] = {name: _epoch_to_iso(value) for name, value in timings.items()}
        created = timings.get("created_at")
        durations = {
            "to_dispatch": timings.get("dispatched_at"),
            "to_ack": timings.get("acked_at"),
            "total": timings.get("ended_at"),
        }
        view["durations_ms"] = {
            name: int(value) - int(created) for name, value in durations.items() if value and created
        }
    if "attempts" in job:
        view["attempts"] = [
            {
                **attempt,
                **{name: _epoch_to_iso(attempt[name]) for name in ("started_at", "ended_at") if attempt.get(name)},
            }
            for attempt in job["attempts"]
        ]
    if "partials" in job:
        view["partials"] = [
            {**partial, "at": _epoch_to_iso(partial["at"])} if partial.get("at") else partial for partial in job["partials"]
        ]
    return view


@router.post("", auth=require(Scope.JOBS_WRITE), summary="Submit a job", response={200: dict, 202: dict})
async def submit(request: HttpRequest, payload: JobIn, wait: str | None = None) -> Status:
    """202 with the new job; with `wait`, 200 and the full job once it ended within that many seconds.
    The same `Idempotency-Key` with the same body gives the same job; with another body, 409."""
    status, answer = await submit_answer(payload, wait, request.headers.get("Idempotency-Key", ""), actor_of(request))
    return Status(status, answer)


@router.get("/{job_id}", auth=require(Scope.JOBS_READ), summary="One job (long-poll with `wait`)", response=dict)
async def get_job(request: HttpRequest, job_id: str, wait: str | None = None) -> dict[str, Any]:
    return await job_answer(job_id, wait)


# The two views' bodies, shared with the lean route of the same endpoints (jobs/lean_api.py), so both answer
# alike: they take what the views parsed and return the answer, or raise ApiError or a service's exception.


async def submit_answer(payload: JobIn, wait: str | None, idempotency_key: str, actor: str) -> tuple[int, dict[str, Any]]:
    wait_s = _wait(wait)
    _check_languages(payload)
    body: dict[str, Any] = payload.model_dump(exclude_none=True)
    try:
        submitted = await services.submit_job(
            body, idempotency_key=idempotency_key[:200], client_id=actor, wait_s=wait_s or 0.0
        )
    except services.InvalidJob as exc:
        raise ApiError(exc.status, exc.code, exc.message, {"field": exc.field}) from None
    except services.JobConflict:
        raise ApiError(409, "IDEMPOTENCY_CONFLICT", "this Idempotency-Key was used with a different body") from None
    except services.JobNotFound:
        # Redis lost its data between the job's creation and the answer's read, before the job reached the
        # database: to the client that is Redis being down (503 DEPENDENCY_DOWN, Retry-After), and the same
        # submission (same Idempotency-Key) creates it again.
        raise redis.ConnectionError("Redis lost the job it had just accepted") from None
    # submit_job waited for the end itself when asked to (subscribed before the job existed: one read).
    job = submitted.job
    if wait_s and job["state"] in services.TERMINAL:
        return 200, _public(job)
    short = {name: job.get(name) for name in ("job_id", "state", "attempt_id", "node_id", "pool", "created_at")}
    return 202, _public(short)


async def job_answer(job_id: str, wait: str | None) -> dict[str, Any]:
    wait_s = _wait(wait)
    try:
        if wait_s:
            return _public(await services.wait_for_job(job_id, wait_s))
        return _public(await services.get_job(job_id))
    except services.JobNotFound:
        raise ApiError(404, "NOT_FOUND", f"no job {job_id[:64]!r} (unknown, or ended longer ago than the retention)") from None


@router.post("/{job_id}/cancel", auth=require(Scope.JOBS_WRITE), summary="Cancel a job", response=dict)
async def cancel(request: HttpRequest, job_id: str) -> dict[str, Any]:
    try:
        return _public(await services.cancel_job(job_id, actor_of(request)))
    except services.JobNotFound:
        raise ApiError(404, "NOT_FOUND", f"no job {job_id[:64]!r}") from None


@router.get("", auth=require(Scope.JOBS_READ), summary="Job history (from the database)", response=dict)
async def list_jobs(
    request: HttpRequest,
    state: str | None = None,
    node_id: str | None = None,
    pool: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = history.DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Newest first, `limit` jobs a page (1 to 500, default 100); `next_cursor` fetches the next page."""
    if state is not None and state not in JobState.values:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown state {state!r}: one of {', '.join(JobState.values)}", {"field": "state"})
    if not 1 <= limit <= history.MAX_LIMIT:
        raise ApiError(400, "VALIDATION_ERROR", f"limit must be between 1 and {history.MAX_LIMIT}", {"field": "limit"})
    if since is not None and since.tzinfo is not None:
        # In UTC before it reaches the database: PostgreSQL refuses offsets past 15:59 (a 500 the schema
        # fuzzer found with "+16:38"), and a time at the end of the calendar cannot be moved at all.
        try:
            since = since.astimezone(UTC)
        except OverflowError:
            raise ApiError(400, "VALIDATION_ERROR", "since is out of range", {"field": "since"}) from None
    try:
        rows, next_cursor = await database_sync_to_async(_page)(state, node_id, pool, since, cursor, limit)
    except ValueError as exc:
        raise ApiError(400, "BAD_CURSOR", str(exc), {"field": "cursor"}) from None
    return {"jobs": rows, "next_cursor": next_cursor}


def _page(state, node_id, pool, since, cursor, limit):  # type: ignore[no-untyped-def]
    rows, next_cursor = history.list_jobs(state=state, node_id=node_id, pool=pool, since=since, cursor=cursor, limit=limit)
    return [history.job_row_to_dict(row) for row in rows], next_cursor
