"""Applies job audit entries (see core/audit.py) to the Job and JobAttempt tables in bulk.

Entries may arrive out of order or twice (a writer that crashed after its commit, before its ack, has its
batch claimed again), so every row keeps the `seq` of the entry it came from and only a higher `seq`
replaces it. The writer holds a named lock, so reading the stored `seq` and then upserting is not a race.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.utils import timezone

from jobs.models import Job, JobAttempt, JobState

K = TypeVar("K", bound=Hashable)

JOB_UPDATE_FIELDS = (
    "state",
    "reason",
    "src_lang",
    "tgt_lang",
    "pool",
    "node_id",
    "attempt_count",
    "session_id",
    "utterance_index",
    "trace_id",
    "pinned_node",
    "created_at",
    "ended_at",
    "error",
    "timings",
    "seq",
)
ATTEMPT_UPDATE_FIELDS = ("node_id", "state", "reason", "started_at", "ended_at", "node_error", "seq")


def _at(ms: int | float | str | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)


def _newest(entries: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], K]) -> dict[K, dict[str, Any]]:
    """The entry with the highest seq for each key; on a tie (a duplicate) the first one."""
    newest: dict[K, dict[str, Any]] = {}
    for entry in entries:
        k = key(entry)
        if k not in newest or int(entry["seq"]) > int(newest[k]["seq"]):
            newest[k] = entry
    return newest


def _is_newer(seq: int, stored: int | None) -> bool:
    """Whether an entry replaces a row; None stands for no row, or a bare row that no job entry filled yet."""
    return stored is None or seq > stored


def _job_row(entry: dict[str, Any]) -> Job:
    error = entry.get("error")
    utterance_index = entry.get("utterance_index")
    return Job(
        job_id=entry["job_id"],
        state=entry["state"],
        reason=entry.get("reason") or "",
        src_lang=entry.get("src_lang") or "",
        tgt_lang=entry.get("tgt_lang") or "",
        pool=entry.get("pool") or "",
        node_id=entry.get("node_id") or "",
        attempt_count=int(entry.get("attempt_id") or 0),
        # Client-supplied ids: a long one is cut rather than sending the whole job to the dead letters.
        session_id=(entry.get("session_id") or "")[:128],
        utterance_index=None if utterance_index is None else int(utterance_index),
        trace_id=(entry.get("trace_id") or "")[:128],
        pinned_node=entry.get("pinned_node") or "",
        created_at=_at(entry["created_at"]),
        ended_at=_at(entry.get("ended_at")),
        # Only code and message: anything else a node put beside them could carry texts, which the
        # database never keeps.
        error={"code": error.get("code", ""), "message": error.get("message", "")} if error else None,
        timings=entry.get("timings") or {},
        seq=int(entry["seq"]),
    )


def _bare_job_row(entry: dict[str, Any], started_at: datetime | None) -> Job:
    """A job known only from an attempt entry; its first job entry fills the rest (seq stays null until then)."""
    return Job(
        job_id=entry["job_id"],
        state=JobState.NEW,
        node_id=entry.get("node_id") or "",
        attempt_count=int(entry["attempt_id"]),
        # created_at is required (the history pages by it): the best time known until the job entry comes.
        created_at=started_at or _at(entry.get("ended_at")) or timezone.now(),
        seq=None,
    )


def _attempt_key(entry: dict[str, Any]) -> tuple[str, int]:
    return entry["job_id"], int(entry["attempt_id"])


def _attempt_row(entry: dict[str, Any], started_at: datetime | None) -> JobAttempt:
    return JobAttempt(
        job_id=entry["job_id"],
        attempt_id=int(entry["attempt_id"]),
        node_id=entry.get("node_id") or "",
        state=entry["state"],
        reason=entry.get("reason") or "",
        started_at=started_at,
        ended_at=_at(entry.get("ended_at")),
        # Written by job_fail_attempt.lua as the string the caller encoded (Lua's JSON would alter it).
        node_error=json.loads(entry["node_error_json"]) if entry.get("node_error_json") else entry.get("node_error"),
        seq=int(entry["seq"]),
    )


def apply_entries(items: list[dict[str, Any]]) -> None:
    """Upsert jobs and attempts, newest seq winning; runs inside the writer's transaction.

    1. Keep the newest entry per job and per (job, attempt) of the batch, and each attempt's start.
    2. Read the stored seq of every job and attempt mentioned: one query each, whatever the batch size.
    3. Upsert the jobs whose entry is newer than their row; insert a bare row for a job known only from an
       attempt (without overwriting a row that appeared meanwhile).
    4. Upsert the attempts whose entry is newer than their row; fill in the start of the others that lack it.
    """
    unknown = {item.get("type") for item in items} - {"job", "attempt"}
    if unknown:
        # Raising sends the batch entry by entry and this entry to the dead letters, instead of losing it.
        raise ValueError(f"unknown job audit entry type(s): {sorted(map(str, unknown))}")
    jobs = _newest((item for item in items if item["type"] == "job"), key=lambda entry: entry["job_id"])
    attempt_items = [item for item in items if item["type"] == "attempt"]
    attempts = _newest(attempt_items, key=_attempt_key)
    # Only the entry that starts an attempt carries started_at, and it never changes afterwards: so it is
    # taken from any entry, even one whose seq lost to a later entry that arrived first.
    starts: dict[tuple[str, int], datetime | None] = {}
    for item in attempt_items:
        if item.get("started_at") is not None:
            starts.setdefault(_attempt_key(item), _at(item["started_at"]))

    job_ids = set(jobs) | {job_id for job_id, _ in attempts}
    stored_jobs = dict(
        Job.objects.select_for_update().filter(job_id__in=job_ids).values_list("job_id", "seq")
    )
    stored_attempts = {
        (job_id, attempt_id): (pk, seq, started_at)
        for pk, job_id, attempt_id, seq, started_at in JobAttempt.objects.filter(
            job_id__in={job_id for job_id, _ in attempts}
        ).values_list("pk", "job_id", "attempt_id", "seq", "started_at")
    }

    changed_jobs = [
        _job_row(entry)
        for job_id, entry in jobs.items()
        if _is_newer(int(entry["seq"]), stored_jobs.get(job_id))
    ]
    if changed_jobs:
        Job.objects.bulk_create(
            changed_jobs, update_conflicts=True, unique_fields=["job_id"], update_fields=JOB_UPDATE_FIELDS
        )

    # The highest attempt of a job carries the best guess of its node until the job entry arrives.
    bare_jobs: dict[str, Job] = {}
    for key, entry in sorted(attempts.items()):
        if key[0] not in stored_jobs and key[0] not in jobs:
            bare_jobs[key[0]] = _bare_job_row(entry, starts.get(key))
    if bare_jobs:
        Job.objects.bulk_create(list(bare_jobs.values()), ignore_conflicts=True)

    changed_attempts: list[JobAttempt] = []
    late_starts: list[JobAttempt] = []
    for key, entry in attempts.items():
        pk, stored_seq, stored_started_at = stored_attempts.get(key, (None, None, None))
        started_at = stored_started_at or starts.get(key)
        if _is_newer(int(entry["seq"]), stored_seq):
            changed_attempts.append(_attempt_row(entry, started_at))
        elif stored_started_at is None and started_at is not None:
            late_starts.append(JobAttempt(pk=pk, started_at=started_at))
    if changed_attempts:
        JobAttempt.objects.bulk_create(
            changed_attempts,
            update_conflicts=True,
            unique_fields=["job", "attempt_id"],
            update_fields=ATTEMPT_UPDATE_FIELDS,
        )
    if late_starts:
        JobAttempt.objects.bulk_update(late_starts, ["started_at"])
