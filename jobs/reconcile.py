"""Keeps the audit mirror true to how jobs ended, whatever died on the way.

A job's end is decided by one script that writes the terminal state, its reason, its end time and its seq
into the job's hash together; the audit entries that tell the database follow in the next round trip. A
process killed between the two leaves a row that says `SELECTING` for ever, and a Redis that lost its data
leaves rows whose job nobody will ever end. The reconciler compares the mirror's live rows with Redis:

- the job is terminal in Redis: its entries are appended again, built from the hash exactly as the live path
  builds them (same seq, so a second copy changes nothing);
- Redis has no such job: the job is settled `FAILED` with reason `STATE_LOST`, and so are its live attempts;
- the job is live in Redis: nothing to do, its own transitions will be recorded.

Entries go through the audit stream like every other change, so the writer stays the only one writing the
job tables. `GET /jobs/{id}` of a job that Redis forgot uses the same judgement (`ended_view`), so a client
gets the terminal answer the mirror will hold.

The end entry cannot be appended inside the transition's own script: the audit stream is one global key in
another hash slot than the job, and Redis Cluster refuses a script that touches two slots.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from core import audit, metrics
from core.redis import get_sync_redis, keys
from jobs.models import FailureReason, Job, JobAttempt, JobState

log = logging.getLogger(__name__)

MIRROR_LIVE = (JobState.NEW, JobState.SELECTING, JobState.RESERVED, JobState.DISPATCHED, JobState.ACKED)
TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
LOST_MESSAGE = "the scheduler lost this job's live state (Redis lost its data) before it ended"
CHUNK = 200


class NotInMirror(Exception):
    """Neither Redis nor the database knows the job."""


@dataclass
class Reconciled:
    checked: int = 0
    repaired: int = 0
    lost: int = 0


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _lost_entries(job: Job, attempts: list[JobAttempt], now_ms: int) -> list[dict[str, Any]]:
    """FAILED/STATE_LOST for the job and each attempt still live, one seq above anything the mirror holds so
    they win over the rows; the same facts give the same entries, whoever builds them."""
    seq = max([job.seq or 0, *(attempt.seq for attempt in attempts)]) + 1
    error = {"code": FailureReason.STATE_LOST, "message": LOST_MESSAGE}
    entries: list[dict[str, Any]] = [
        {
            "type": "attempt", "job_id": job.job_id, "attempt_id": attempt.attempt_id, "seq": seq,
            "node_id": attempt.node_id, "state": JobState.FAILED, "reason": FailureReason.STATE_LOST,
            "ended_at": now_ms,
        }  # fmt: skip
        for attempt in attempts
        if attempt.state not in TERMINAL
    ]
    entries.append(
        {
            "type": "job", "job_id": job.job_id, "seq": seq, "state": JobState.FAILED,
            "reason": FailureReason.STATE_LOST, "src_lang": job.src_lang, "tgt_lang": job.tgt_lang, "pool": job.pool,
            "node_id": job.node_id, "attempt_id": job.attempt_count or 1, "session_id": job.session_id,
            "utterance_index": job.utterance_index, "trace_id": job.trace_id, "pinned_node": job.pinned_node,
            "created_at": _ms(job.created_at), "ended_at": now_ms, "error": error, "timings": job.timings or {},
        }  # fmt: skip
    )
    return entries


def _ended_entries(job_id: str, live: dict[str, str], attempts: list[str]) -> list[dict[str, Any]]:
    """The entries of a job that ended in Redis, from its hash and attempt list as the live path left them."""
    from jobs.services import job_audit_data  # here: jobs.services imports this module


    seq = int(live.get("seq") or 0)
    entries = []
    for raw in attempts:
        attempt = json.loads(raw)
        entry = {
            "type": "attempt", "job_id": job_id, "attempt_id": int(attempt["attempt_id"]), "seq": seq,
            "node_id": attempt.get("node_id") or "", "state": attempt["state"], "reason": attempt.get("reason") or "",
            "started_at": attempt.get("started_at"), "ended_at": attempt.get("ended_at"),
        }  # fmt: skip
        # The node's own error report sits beside the attempt list, byte for byte (job_fail_attempt.lua).
        if live.get(f"node_error:{entry['attempt_id']}"):
            entry["node_error"] = json.loads(live[f"node_error:{entry['attempt_id']}"])
        entries.append(entry)
    entries.append(job_audit_data(job_id, live))
    return entries


def _append(entries: list[dict[str, Any]]) -> None:
    # One MULTI: a job's entries land together or not at all.
    with get_sync_redis().pipeline(transaction=True) as pipe:
        for entry in entries:
            audit.add(pipe, "jobs", **entry)
        pipe.execute()


def reconcile_jobs(grace_s: float | None = None, limit: int = 5000) -> Reconciled:
    """Compare the mirror's live rows older than `grace_s` with Redis and settle what Redis ended or forgot.

    Steps: read live rows oldest first, in chunks; read each one's state in Redis in one round trip per
    chunk; for a job that ended, read its hash and attempts and append its end entries; for a job Redis does
    not know, append STATE_LOST entries; count everything.
    """
    grace = settings.JOB_RECONCILE_GRACE_S if grace_s is None else grace_s
    # Younger rows are left to the writer: their entries are most likely still on the stream.
    cutoff = timezone.now() - timedelta(seconds=grace)
    rows = list(
        Job.objects.filter(state__in=MIRROR_LIVE, created_at__lt=cutoff).order_by("created_at")[:limit]
    )
    outcome = Reconciled(checked=len(rows))
    client = get_sync_redis()
    k = keys()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        with client.pipeline(transaction=False) as pipe:
            for row in chunk:
                pipe.hget(k.job(row.job_id), "state")
            states = pipe.execute()
        ended = [row for row, state in zip(chunk, states, strict=True) if state in TERMINAL]
        lost = [row for row, state in zip(chunk, states, strict=True) if state is None]
        for row in ended:
            if _repair_ended(row.job_id):
                outcome.repaired += 1
        if lost:
            attempts: dict[str, list[JobAttempt]] = {}
            for attempt in JobAttempt.objects.filter(job_id__in=[row.job_id for row in lost]):
                attempts.setdefault(attempt.job_id, []).append(attempt)
            now_ms = int(time.time() * 1000)
            for row in lost:
                _append(_lost_entries(row, attempts.get(row.job_id, []), now_ms))
                log.warning("job settled as lost", extra={"event": "job_state_lost", "job_id": row.job_id,
                                                          "reason": FailureReason.STATE_LOST})  # fmt: skip
            outcome.lost += len(lost)
    if outcome.repaired:
        metrics.JOBS_RECONCILED.labels(outcome="repaired").inc(outcome.repaired)
    if outcome.lost:
        metrics.JOBS_RECONCILED.labels(outcome="lost").inc(outcome.lost)
    return outcome


def _repair_ended(job_id: str) -> bool:
    k = keys()
    live = get_sync_redis().hgetall(k.job(job_id))
    # Attempts are fields of the job hash (`attempt:<id>`), read with it.
    attempts = [value for name, value in live.items() if name.startswith("attempt:")]
    if live.get("state") not in TERMINAL:
        return False  # expired or changed meanwhile: the next run judges it again
    _append(_ended_entries(job_id, live, attempts))
    log.info("job end recorded again", extra={"event": "job_end_repaired", "job_id": job_id})
    return True


def ended_view(job_id: str) -> dict[str, Any]:
    """The job as the mirror knows it, for a job Redis does not know: ended long ago (past the retention)
    or lost. A row still live is settled as lost (its entries appended) and shown as the mirror will hold it.
    Raises NotInMirror when the database has no such job either."""
    job = Job.objects.filter(job_id=job_id).first()
    if job is None:
        raise NotInMirror(job_id)
    attempts = list(JobAttempt.objects.filter(job_id=job_id).order_by("attempt_id"))
    if job.state in MIRROR_LIVE:
        # The caller found no such key in a Redis that answered, and a mirror row means the job was created
        # there: Redis has lost it.
        entries = _lost_entries(job, attempts, int(time.time() * 1000))
        _append(entries)
        metrics.JOBS_RECONCILED.labels(outcome="lost").inc()
        log.warning("job settled as lost on read", extra={"event": "job_state_lost", "job_id": job_id,
                                                          "reason": FailureReason.STATE_LOST})  # fmt: skip
        lost_attempts = {entry["attempt_id"]: entry for entry in entries if entry["type"] == "attempt"}
        for attempt in attempts:
            if attempt.attempt_id in lost_attempts:
                attempt.state, attempt.reason = JobState.FAILED, FailureReason.STATE_LOST
                attempt.ended_at = datetime.fromtimestamp(entries[-1]["ended_at"] / 1000, tz=UTC)
        job.state, job.reason, job.error = JobState.FAILED, FailureReason.STATE_LOST, entries[-1]["error"]
        job.ended_at = datetime.fromtimestamp(entries[-1]["ended_at"] / 1000, tz=UTC)
    timings = {name: value for name, value in (job.timings or {}).items() if isinstance(value, int)}
    view: dict[str, Any] = {
        "job_id": job.job_id,
        "state": job.state,
        "attempt_id": job.attempt_count or 1,
        "node_id": job.node_id or None,
        "pool": job.pool or None,
        "src_lang": job.src_lang,
        "tgt_lang": job.tgt_lang,
        "trace_id": job.trace_id,
        "created_at": _ms(job.created_at),
        "timings": {"created_at": _ms(job.created_at), **timings},
        "tried_nodes": [attempt.node_id for attempt in attempts if attempt.node_id and attempt.state in TERMINAL],
        "attempts": [
            {
                "attempt_id": attempt.attempt_id, "node_id": attempt.node_id, "state": attempt.state,
                "reason": attempt.reason or None, "started_at": _ms(attempt.started_at), "ended_at": _ms(attempt.ended_at),
            }  # fmt: skip
            for attempt in attempts
        ],
        # Texts and audio never reach the database: a result read from the mirror has none.
        "from_history": True,
    }
    if job.state == JobState.FAILED and job.error:
        view["error"] = job.error
    return view
