"""The job history lists the audit mirror newest first, filtered, in keyset pages whose cursor survives new
jobs arriving between two pages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from jobs.history import MAX_LIMIT, job_row_to_dict, list_jobs
from jobs.models import Job, JobAttempt

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_job(job_id: str, minute: int, **fields: object) -> Job:
    defaults: dict[str, object] = {
        "state": "DONE",
        "src_lang": "en",
        "tgt_lang": "zh",
        "pool": "en-zh",
        "seq": 1,
    }
    return Job.objects.create(
        job_id=job_id, created_at=START + timedelta(minutes=minute), **{**defaults, **fields}
    )


def ids(rows: list[Job]) -> list[str]:
    return [row.job_id for row in rows]


def all_pages(limit: int, **filters: object) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        rows, cursor = list_jobs(cursor=cursor, limit=limit, **filters)
        pages.append(ids(rows))
        if cursor is None:
            return pages


@pytest.mark.django_db
def test_jobs_are_listed_newest_first_and_filtered_by_state_node_pool_and_since() -> None:
    make_job("job-a", 0, state="DONE", node_id="node-1", pool="en-zh")
    make_job("job-b", 1, state="FAILED", node_id="node-2", pool="en-zh", reason="JOB_TIMEOUT")
    make_job("job-c", 2, state="DONE", node_id="node-2", pool="de-en")
    make_job("job-d", 3, state="CANCELLED", node_id="node-1", pool="de-en")

    assert ids(list_jobs()[0]) == ["job-d", "job-c", "job-b", "job-a"]
    assert ids(list_jobs(state="DONE")[0]) == ["job-c", "job-a"]
    assert ids(list_jobs(node_id="node-2")[0]) == ["job-c", "job-b"]
    assert ids(list_jobs(pool="de-en")[0]) == ["job-d", "job-c"]
    assert ids(list_jobs(since=START + timedelta(minutes=2))[0]) == ["job-d", "job-c"]
    assert ids(list_jobs(state="DONE", node_id="node-2", pool="de-en")[0]) == ["job-c"]


@pytest.mark.django_db
def test_pages_follow_each_other_without_gaps_or_repeats_even_when_jobs_share_a_creation_time() -> None:
    for n in range(7):
        # Pairs share a creation time, so the order between them comes from the job id alone.
        make_job(f"job-{n}", n // 2)

    pages = all_pages(limit=3)

    assert pages == [["job-6", "job-5", "job-4"], ["job-3", "job-2", "job-1"], ["job-0"]]


@pytest.mark.django_db
def test_a_filtered_listing_pages_within_the_filter() -> None:
    for n in range(6):
        make_job(f"job-{n}", n, state="FAILED" if n % 2 else "DONE")

    assert all_pages(limit=2, state="FAILED") == [["job-5", "job-3"], ["job-1"]]


@pytest.mark.django_db
def test_jobs_recorded_between_two_pages_do_not_shift_the_next_page() -> None:
    for n in range(5):
        make_job(f"job-{n}", n)
    first, cursor = list_jobs(limit=2)

    make_job("job-new-1", 10)
    make_job("job-new-2", 11)
    second, cursor = list_jobs(cursor=cursor, limit=2)
    third, cursor = list_jobs(cursor=cursor, limit=2)

    assert (ids(first), ids(second), ids(third), cursor) == (
        ["job-4", "job-3"],
        ["job-2", "job-1"],
        ["job-0"],
        None,
    )


@pytest.mark.django_db
def test_a_page_that_ends_exactly_at_the_last_job_has_no_next_cursor() -> None:
    for n in range(4):
        make_job(f"job-{n}", n)

    assert all_pages(limit=2) == [["job-3", "job-2"], ["job-1", "job-0"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"no separator").decode(),
        base64.urlsafe_b64encode(b"yesterday|job-1").decode(),
        base64.urlsafe_b64encode(b"2025-03-01T12:00:00+00:00|").decode(),
        base64.urlsafe_b64encode(b"2025-03-01T12:00:00|job-1").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|job").decode(),
    ],
)
def test_a_cursor_that_is_not_one_of_ours_is_refused_with_a_clear_message(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor: pass the next_cursor of a previous page unchanged"):
        list_jobs(cursor=cursor)


@pytest.mark.django_db
def test_an_unknown_state_or_a_limit_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown state 'done'"):
        list_jobs(state="done")
    with pytest.raises(ValueError, match=f"limit must be between 1 and {MAX_LIMIT}"):
        list_jobs(limit=0)
    with pytest.raises(ValueError, match=f"limit must be between 1 and {MAX_LIMIT}"):
        list_jobs(limit=MAX_LIMIT + 1)


@pytest.mark.django_db
def test_a_history_item_holds_the_job_and_its_attempts_in_order(django_assert_num_queries) -> None:
    job = make_job(
        "job-1",
        0,
        state="DONE",
        node_id="node-2",
        attempt_count=2,
        session_id="sess-1",
        utterance_index=3,
        trace_id="trace-1",
        ended_at=START + timedelta(seconds=4),
        timings={"dispatched_at": 1},
    )
    JobAttempt.objects.create(
        job=job, attempt_id=2, node_id="node-2", state="DONE", seq=5, started_at=START + timedelta(seconds=3),
        ended_at=START + timedelta(seconds=4),
    )  # fmt: skip
    JobAttempt.objects.create(
        job=job, attempt_id=1, node_id="node-1", state="FAILED", reason="ACK_TIMEOUT", seq=3,
        started_at=START, ended_at=START + timedelta(seconds=3),
    )  # fmt: skip
    make_job("job-2", 1, state="FAILED", reason="NO_AVAILABLE_NODE", attempt_count=0)

    # One query for the jobs and one for all their attempts, however many jobs the page holds.
    with django_assert_num_queries(2):
        rows, _ = list_jobs()
        items = [job_row_to_dict(row) for row in rows]

    assert items[1] == {
        "job_id": "job-1",
        "state": "DONE",
        "reason": "",
        "src_lang": "en",
        "tgt_lang": "zh",
        "pool": "en-zh",
        "node_id": "node-2",
        "attempt_id": 2,
        "session_id": "sess-1",
        "utterance_index": 3,
        "trace_id": "trace-1",
        "created_at": "2025-03-01T12:00:00.000Z",
        "ended_at": "2025-03-01T12:00:04.000Z",
        "error": None,
        "attempts": [
            {
                "attempt_id": 1,
                "node_id": "node-1",
                "state": "FAILED",
                "reason": "ACK_TIMEOUT",
                "started_at": "2025-03-01T12:00:00.000Z",
                "ended_at": "2025-03-01T12:00:03.000Z",
            },
            {
                "attempt_id": 2,
                "node_id": "node-2",
                "state": "DONE",
                "reason": "",
                "started_at": "2025-03-01T12:00:03.000Z",
                "ended_at": "2025-03-01T12:00:04.000Z",
            },
        ],
    }
    assert (items[0]["job_id"], items[0]["attempt_id"], items[0]["attempts"]) == ("job-2", None, [])
