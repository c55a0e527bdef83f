"""Job history from the audit mirror: newest first, filtered, in keyset pages.

A page ends at a (created_at, job_id) pair and the next one starts strictly after it, so jobs recorded
while someone pages (always newer, hence above the first page) never shift or repeat a row the way an
offset would.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q

from core.timefmt import iso
from jobs.models import Job, JobAttempt, JobState

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, job_id) a cursor stands for; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        created_at = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid cursor: pass the next_cursor of a previous page unchanged") from None
    if not job_id or created_at.tzinfo is None:
        raise ValueError("invalid cursor: pass the next_cursor of a previous page unchanged")
    return created_at, job_id


def list_jobs(
    state: str | None = None,
    node_id: str | None = None,
    pool: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> tuple[list[Job], str | None]:
    """One page of jobs, newest first, and the cursor of the next page (None on the last one).

    1. Check the state and limit, and decode the cursor (ValueError with the reason on any of them).
    2. Filter by state, node, pool and creation time; continue strictly after the cursor's row.
    3. Read one row more than asked, which tells whether another page follows, with the attempts prefetched.
    """
    if state is not None and state not in JobState.values:
        raise ValueError(f"unknown state {state!r}: one of {', '.join(JobState.values)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    jobs = Job.objects.order_by("-created_at", "-job_id")
    if state is not None:
        jobs = jobs.filter(state=state)
    if node_id is not None:
        jobs = jobs.filter(node_id=node_id)
    if pool is not None:
        jobs = jobs.filter(pool=pool)
    if since is not None:
        jobs = jobs.filter(created_at__gte=since)
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        jobs = jobs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, job_id__lt=job_id))
    attempts = Prefetch("attempts", queryset=JobAttempt.objects.order_by("attempt_id"))
    rows = list(jobs.prefetch_related(attempts)[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


def _iso(value: datetime | None) -> str | None:
    return iso(value)


def job_row_to_dict(job: Job) -> dict[str, Any]:
    """The API's history item of one job (its attempts prefetched by `list_jobs`)."""
    return {
        "job_id": job.job_id,
        "state": job.state,
        "reason": job.reason,
        "src_lang": job.src_lang,
        "tgt_lang": job.tgt_lang,
        "pool": job.pool,
        "node_id": job.node_id,
        "attempt_id": job.attempt_count or None,
        "session_id": job.session_id,
        "utterance_index": job.utterance_index,
        "trace_id": job.trace_id,
        "created_at": _iso(job.created_at),
        "ended_at": _iso(job.ended_at),
        "error": job.error,
        "attempts": [
            {
                "attempt_id": attempt.attempt_id,
                "node_id": attempt.node_id,
                "state": attempt.state,
                "reason": attempt.reason,
                "started_at": _iso(attempt.started_at),
                "ended_at": _iso(attempt.ended_at),
            }
            for attempt in job.attempts.all()
        ],
    }
