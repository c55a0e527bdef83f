"""The reconciler settles mirror rows that stayed live: a job whose end reached Redis but not the database
(its process died between the two) gets its end recorded from the hash; a job Redis forgot is FAILED with
STATE_LOST; a job still live in Redis, or too young to judge, is left alone."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from core import audit, scripts
from core.redis import get_sync_redis, keys, run_sync
from jobs import services
from jobs.audit import apply_entries
from jobs.models import Job, JobAttempt
from jobs.reconcile import reconcile_jobs
from tests.jobs.entries import attempt_entry, job_entry
from tests.jobs.support import AUDIO

REQUEST = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, "audio_format": "opus", "sample_rate": 16000}


def mirror(entries: list[dict]) -> None:
    """Rows as the audit writer leaves them (it applies entries inside its transaction)."""
    with transaction.atomic():
        apply_entries(entries)


def submit_and_record() -> str:
    """A job created through the live path (no node serves it, so it waits) and mirrored as SELECTING."""
    job_id = run_sync(services.submit_job, dict(REQUEST)).job_id
    audit.drain()
    assert Job.objects.get(job_id=job_id).state == "SELECTING"
    return job_id


def end_without_follow_up(job_id: str) -> None:
    """The terminal transition exactly as the live path runs it, and its audit entry lost afterwards: the
    script writes both together, but the stream's length cap trims entries that a writer down for too long
    never read."""
    k = keys()
    fields = {"reason": "CANCELLED", "cancelled_by": "test"}
    result = scripts.run_blocking(
        "job_step", k.job_slot_keys(job_id),
        ["", "SELECTING,RESERVED,DISPATCHED,ACKED", "CANCELLED", json.dumps(fields), "", "3600", k.jobs_ended_channel],
    )  # fmt: skip
    assert result[0] == "OK"
    get_sync_redis().xtrim(k.job_audit(k.job_shard(job_id)), maxlen=0)


@pytest.mark.django_db(transaction=True)
def test_a_job_that_ended_in_redis_but_not_in_the_mirror_gets_its_end_recorded_from_the_hash() -> None:
    job_id = submit_and_record()
    end_without_follow_up(job_id)
    audit.drain()
    assert Job.objects.get(job_id=job_id).state == "SELECTING"

    outcome = reconcile_jobs(grace_s=0)
    audit.drain()

    job = Job.objects.get(job_id=job_id)
    assert (outcome.checked, outcome.repaired, outcome.lost) == (1, 1, 0)
    assert (job.state, job.reason, job.seq) == ("CANCELLED", "CANCELLED", int(get_sync_redis().hget(keys().job(job_id), "seq")))
    assert job.ended_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_second_run_finds_nothing_left_to_settle() -> None:
    job_id = submit_and_record()
    end_without_follow_up(job_id)
    reconcile_jobs(grace_s=0)
    audit.drain()

    again = reconcile_jobs(grace_s=0)

    assert (again.checked, again.repaired, again.lost) == (0, 0, 0)
    assert Job.objects.get(job_id=job_id).state == "CANCELLED"


@pytest.mark.django_db(transaction=True)
def test_a_job_redis_forgot_is_failed_with_state_lost_and_so_are_its_live_attempts() -> None:
    old = int((timezone.now() - timedelta(minutes=5)).timestamp() * 1000)

    mirror(
        [
            job_entry("job-lost", 4, "DISPATCHED", node_id="node-2", attempt_id=2, created_at=old),
            attempt_entry("job-lost", 1, 3, "FAILED", node_id="node-1", reason="JOB_TIMEOUT", ended_at=old + 30_000),
            attempt_entry("job-lost", 2, 4, "DISPATCHED", node_id="node-2", started_at=old + 30_010),
        ]
    )

    outcome = reconcile_jobs(grace_s=60)
    audit.drain()

    job = Job.objects.get(job_id="job-lost")
    assert (outcome.checked, outcome.repaired, outcome.lost) == (1, 0, 1)
    assert (job.state, job.reason, job.error["code"], job.seq) == ("FAILED", "STATE_LOST", "STATE_LOST", 5)
    assert job.ended_at is not None
    attempts = list(JobAttempt.objects.filter(job_id="job-lost").order_by("attempt_id").values_list("state", "reason"))
    assert attempts == [("FAILED", "JOB_TIMEOUT"), ("FAILED", "STATE_LOST")]


@pytest.mark.django_db(transaction=True)
def test_a_job_live_in_redis_and_a_row_younger_than_the_grace_are_left_alone() -> None:
    live = submit_and_record()

    mirror([job_entry("job-young", 1, "SELECTING", created_at=int(timezone.now().timestamp() * 1000))])

    outcome = reconcile_jobs(grace_s=30)
    assert (outcome.checked, outcome.repaired, outcome.lost) == (0, 0, 0)
    outcome = reconcile_jobs(grace_s=0)
    audit.drain()

    assert (outcome.checked, outcome.repaired, outcome.lost) == (2, 0, 1)
    assert Job.objects.get(job_id=live).state == "SELECTING"
    assert Job.objects.get(job_id="job-young").reason == "STATE_LOST"


@pytest.mark.django_db(transaction=True)
def test_the_command_settles_at_once_and_says_what_it_did() -> None:
    mirror([job_entry("job-gone", 2, "DISPATCHED", node_id="node-1", created_at=int(timezone.now().timestamp() * 1000))])
    out = StringIO()

    call_command("reconcile_jobs", "--grace-s", "0", "--write", stdout=out)

    assert "checked 1 live rows: 0 ends recorded again, 1 settled FAILED STATE_LOST" in out.getvalue()
    assert Job.objects.get(job_id="job-gone").reason == "STATE_LOST"
    with pytest.raises(CommandError, match="--grace-s must be 0 or more"):
        call_command("reconcile_jobs", "--grace-s", "-1")
