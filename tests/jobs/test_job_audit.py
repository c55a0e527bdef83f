"""Job audit entries become Job and JobAttempt rows: the newest seq wins whatever the arrival order, a
redelivered batch changes nothing, and a batch costs a few queries however many entries it holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core import audit
from core.redis import get_sync_redis, keys, run_sync
from jobs.audit import apply_entries
from jobs.models import Job, JobAttempt
from tests.jobs.entries import T0, attempt_entry, job_entry


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def stored_attempts(job_id: str) -> list[tuple[int, str, str, str, int]]:
    return list(
        JobAttempt.objects.filter(job_id=job_id)
        .order_by("attempt_id")
        .values_list("attempt_id", "node_id", "state", "reason", "seq")
    )


@pytest.mark.django_db
def test_an_older_entry_arriving_later_changes_nothing() -> None:
    apply_entries(
        [job_entry("job-1", 5, "DONE", node_id="node-1", ended_at=T0 + 900, timings={"total": 900})]
    )
    apply_entries([job_entry("job-1", 3, "DISPATCHED", node_id="node-1")])

    job = Job.objects.get(job_id="job-1")
    assert (job.state, job.seq, job.ended_at, job.timings) == ("DONE", 5, at(T0 + 900), {"total": 900})


@pytest.mark.django_db
def test_within_one_batch_the_highest_seq_wins_whatever_the_order() -> None:
    apply_entries(
        [
            attempt_entry("job-1", 1, 4, "DONE", ended_at=T0 + 500),
            job_entry("job-1", 4, "DONE", node_id="node-1", ended_at=T0 + 500),
            job_entry("job-1", 1, "SELECTING"),
            attempt_entry("job-1", 1, 2, "DISPATCHED"),
            job_entry("job-1", 2, "DISPATCHED", node_id="node-1"),
        ]
    )

    job = Job.objects.get(job_id="job-1")
    assert (job.state, job.node_id, job.seq) == ("DONE", "node-1", 4)
    assert stored_attempts("job-1") == [(1, "node-1", "DONE", "", 4)]


@pytest.mark.django_db
def test_a_retried_job_keeps_one_row_per_attempt_with_its_own_outcome() -> None:
    apply_entries(
        [
            job_entry("job-1", 1, "DISPATCHED", node_id="node-1"),
            attempt_entry("job-1", 1, 1, "DISPATCHED", node_id="node-1"),
        ]
    )
    apply_entries(
        [
            attempt_entry(
                "job-1", 1, 2, "FAILED", node_id="node-1", reason="ACK_TIMEOUT", ended_at=T0 + 3000
            ),
            attempt_entry("job-1", 2, 3, "DISPATCHED", node_id="node-2", started_at=T0 + 3010),
            job_entry("job-1", 3, "DISPATCHED", node_id="node-2", attempt_id=2),
        ]
    )

    job = Job.objects.get(job_id="job-1")
    assert (job.state, job.node_id, job.attempt_count) == ("DISPATCHED", "node-2", 2)
    assert stored_attempts("job-1") == [
        (1, "node-1", "FAILED", "ACK_TIMEOUT", 2),
        (2, "node-2", "DISPATCHED", "", 3),
    ]


@pytest.mark.django_db
def test_a_redelivered_batch_changes_nothing() -> None:
    batch = [
        job_entry("job-1", 1, "SELECTING"),
        attempt_entry("job-1", 1, 2, "DISPATCHED"),
        job_entry("job-1", 2, "DISPATCHED", node_id="node-1"),
        job_entry("job-2", 1, "FAILED", reason="NO_AVAILABLE_NODE", ended_at=T0 + 10_000),
    ]
    apply_entries(batch)
    apply_entries([job_entry("job-1", 3, "ACKED", node_id="node-1"), attempt_entry("job-1", 1, 3, "ACKED")])
    before = (list(Job.objects.order_by("job_id").values()), list(JobAttempt.objects.values()))

    apply_entries(batch)

    assert (list(Job.objects.order_by("job_id").values()), list(JobAttempt.objects.values())) == before
    assert Job.objects.get(job_id="job-1").state == "ACKED"


@pytest.mark.django_db
def test_an_attempt_before_its_job_creates_a_bare_row_that_the_job_entry_fills() -> None:
    apply_entries([attempt_entry("job-1", 1, 3, "DISPATCHED", node_id="node-7", started_at=T0 + 20)])

    bare = Job.objects.get(job_id="job-1")
    assert (bare.seq, bare.node_id, bare.attempt_count, bare.created_at) == (None, "node-7", 1, at(T0 + 20))

    apply_entries(
        [job_entry("job-1", 1, "SELECTING", trace_id="trace-1", session_id="sess-1", utterance_index=4)]
    )

    job = Job.objects.get(job_id="job-1")
    assert (job.state, job.seq, job.created_at) == ("SELECTING", 1, at(T0))
    assert (job.trace_id, job.session_id, job.utterance_index, job.src_lang, job.tgt_lang) == (
        "trace-1",
        "sess-1",
        4,
        "en",
        "zh",
    )
    assert stored_attempts("job-1") == [(1, "node-7", "DISPATCHED", "", 3)]


@pytest.mark.django_db
def test_an_attempt_keeps_its_start_when_a_later_entry_leaves_it_out() -> None:
    apply_entries([attempt_entry("job-1", 1, 2, "DISPATCHED", started_at=T0 + 15)])
    later = attempt_entry("job-1", 1, 4, "DONE", ended_at=T0 + 700)
    del later["started_at"]
    apply_entries([later])

    attempt = JobAttempt.objects.get(job_id="job-1", attempt_id=1)
    assert (attempt.state, attempt.started_at, attempt.ended_at) == ("DONE", at(T0 + 15), at(T0 + 700))


def acked(job_id: str, seq: int) -> dict[str, object]:
    """An attempt entry as the live path sends it after the start: without started_at."""
    entry = attempt_entry(job_id, 1, seq, "ACKED")
    del entry["started_at"]
    return entry


@pytest.mark.django_db
def test_an_older_entry_that_arrives_late_still_gives_the_attempt_its_start() -> None:
    apply_entries([acked("job-1", 3)])
    assert JobAttempt.objects.get(job_id="job-1").started_at is None

    apply_entries([attempt_entry("job-1", 1, 2, "DISPATCHED", started_at=T0 + 15), acked("job-2", 3)])
    apply_entries([acked("job-2", 3), attempt_entry("job-2", 1, 2, "DISPATCHED", started_at=T0 + 25)])

    one, two = JobAttempt.objects.get(job_id="job-1"), JobAttempt.objects.get(job_id="job-2")
    assert (one.state, one.seq, one.started_at) == ("ACKED", 3, at(T0 + 15))
    assert (two.state, two.seq, two.started_at) == ("ACKED", 3, at(T0 + 25))


@pytest.mark.django_db
def test_only_the_code_and_message_of_an_error_are_stored() -> None:
    error = {"code": "NODE_ERROR", "message": "asr crashed", "details": {"text_asr": "what the speaker said"}}
    apply_entries([job_entry("job-1", 2, "FAILED", reason="NODE_ERROR", error=error, ended_at=T0 + 50)])

    assert Job.objects.get(job_id="job-1").error == {"code": "NODE_ERROR", "message": "asr crashed"}


@pytest.mark.django_db
def test_a_batch_of_500_entries_takes_a_bounded_number_of_queries(django_assert_max_num_queries) -> None:
    # One query per entry would be 500; the bound leaves room for SQLite's 999-parameter insert batches.
    created = [job_entry(f"job-{n:04}", 1, "DISPATCHED", node_id=f"node-{n % 7}") for n in range(250)]
    created += [attempt_entry(f"job-{n:04}", 1, 1, "DISPATCHED") for n in range(250)]
    with django_assert_max_num_queries(20):
        apply_entries(created)

    ended = [job_entry(f"job-{n:04}", 2, "DONE", ended_at=T0 + 400) for n in range(250)]
    ended += [attempt_entry(f"job-{n:04}", 1, 2, "DONE", ended_at=T0 + 400) for n in range(250)]
    with django_assert_max_num_queries(20):
        apply_entries(ended)

    assert Job.objects.filter(state="DONE", seq=2).count() == 250
    assert JobAttempt.objects.filter(state="DONE", ended_at=at(T0 + 400)).count() == 250


@pytest.mark.django_db(transaction=True)
def test_entries_recorded_on_the_stream_out_of_order_end_as_the_newest_state() -> None:
    for entry in (
        job_entry("job-1", 1, "SELECTING"),
        attempt_entry("job-1", 1, 4, "DONE", ended_at=T0 + 800),
        job_entry(
            "job-1", 4, "DONE", node_id="node-1", ended_at=T0 + 800, timings={"dispatched_at": T0 + 10}
        ),
        attempt_entry("job-1", 1, 2, "DISPATCHED"),
        job_entry("job-1", 2, "DISPATCHED", node_id="node-1"),
    ):
        run_sync(audit.record, "jobs", **entry)

    assert audit.drain() == 5

    job = Job.objects.get(job_id="job-1")
    assert (job.state, job.node_id, job.ended_at, job.timings) == (
        "DONE",
        "node-1",
        at(T0 + 800),
        {"dispatched_at": T0 + 10},
    )
    assert stored_attempts("job-1") == [(1, "node-1", "DONE", "", 4)]
    assert get_sync_redis().xlen(keys().audit_stream) == 0


@pytest.mark.django_db(transaction=True)
def test_an_entry_of_an_unknown_type_goes_to_the_dead_letters_and_the_rest_is_written() -> None:
    run_sync(audit.record, "jobs", **job_entry("job-1", 1, "SELECTING"))
    run_sync(audit.record, "jobs", type="partial", job_id="job-1", seq=2)

    assert audit.drain() == 1

    assert Job.objects.get(job_id="job-1").state == "SELECTING"
    dead = get_sync_redis().xrange(f"{keys().audit_stream}:dead")
    assert [json.loads(fields["data"])["type"] for _, fields in dead] == ["partial"]
