"""The jobs admin: the mirrored history with filters and the attempts inline, read-only, and cancel / retry
actions that say plainly when the live job is gone or Redis is down."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from jobs.models import Job, JobAttempt
from supervisor.embedded_redis import RedisProcess
from tests.admin.conftest import column
from tests.conftest import point_at_redis

CHANGELIST = reverse("admin:jobs_job_changelist")
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history() -> None:
    """Three jobs: one done after a retry, one failed without a node, one still running."""
    done = Job.objects.create(
        job_id="job-done", state="DONE", src_lang="en", tgt_lang="zh", pool="en-zh", node_id="node-2",
        attempt_count=2, session_id="sess-1", trace_id="trace-1", created_at=START,
        ended_at=START + timedelta(milliseconds=3250), seq=6,
    )  # fmt: skip
    JobAttempt.objects.create(
        job=done, attempt_id=1, node_id="node-1", state="FAILED", reason="ACK_TIMEOUT", seq=3,
        started_at=START + timedelta(milliseconds=5), ended_at=START + timedelta(milliseconds=3005),
    )  # fmt: skip
    JobAttempt.objects.create(
        job=done, attempt_id=2, node_id="node-2", state="DONE", seq=6,
        started_at=START + timedelta(milliseconds=3010), ended_at=START + timedelta(milliseconds=3250),
    )  # fmt: skip
    Job.objects.create(
        job_id="job-failed", state="FAILED", reason="NO_AVAILABLE_NODE", src_lang="de", tgt_lang="en",
        pool="de-en", created_at=START + timedelta(minutes=1), ended_at=START + timedelta(minutes=1, seconds=10),
        error={"code": "NO_AVAILABLE_NODE", "message": "no node had capacity within 10 s"}, seq=3,
    )  # fmt: skip
    Job.objects.create(
        job_id="job-running", state="DISPATCHED", src_lang="en", tgt_lang="zh", pool="en-zh", node_id="node-1",
        attempt_count=1, created_at=START + timedelta(minutes=2), seq=2,
    )  # fmt: skip
    JobAttempt.objects.create(
        job=Job.objects.get(job_id="job-running"), attempt_id=1, node_id="node-1", state="DISPATCHED", seq=2,
        started_at=START + timedelta(minutes=2),
    )  # fmt: skip


def listed(client: Client, **query: str) -> list[str]:
    """The job ids of a changelist page, in page order."""
    response = client.get(CHANGELIST, query)
    assert response.status_code == 200
    return re.findall(r'<th class="field-job"><a href="[^"]*">([^<]*)</a>', response.content.decode())


@pytest.mark.django_db
def test_the_job_list_shows_state_languages_placement_attempts_and_duration(
    admin_client: Client, history: None
) -> None:
    html = admin_client.get(CHANGELIST).content.decode()

    assert listed(admin_client) == ["job-running", "job-failed", "job-done"]
    states = [re.sub(r"<[^>]+>", "", cell) for cell in column(html, "state_display")]
    assert states == ["DISPATCHED", "FAILED NO_AVAILABLE_NODE", "DONE"]
    assert column(html, "languages") == ["en → zh", "de → en", "en → zh"]
    assert column(html, "node") == ["node-1", "-", "node-2"]
    assert column(html, "attempts") == ["1", "0", "2"]
    assert column(html, "created") == ["2025-03-01 12:02:00 UTC", "2025-03-01 12:01:00 UTC", "2025-03-01 12:00:00 UTC"]
    assert column(html, "duration") == ["-", "10.00 s", "3.25 s"]


@pytest.mark.django_db
def test_the_job_list_filters_by_state_reason_pool_node_and_day_and_finds_ids(
    admin_client: Client, history: None
) -> None:
    assert listed(admin_client, state__exact="DONE") == ["job-done"]
    assert listed(admin_client, reason__exact="NO_AVAILABLE_NODE") == ["job-failed"]
    assert listed(admin_client, pool__exact="en-zh") == ["job-running", "job-done"]
    assert listed(admin_client, node_id__exact="node-1") == ["job-running"]
    assert listed(admin_client, created_at__year="2025", created_at__month="3", created_at__day="1") == [
        "job-running",
        "job-failed",
        "job-done",
    ]
    assert listed(admin_client, created_at__day="2", created_at__month="3", created_at__year="2025") == []
    assert listed(admin_client, q="sess-1") == ["job-done"]
    assert listed(admin_client, q="trace-1") == ["job-done"]
    assert listed(admin_client, q="job-failed") == ["job-failed"]


@pytest.mark.django_db
def test_the_job_page_shows_the_error_and_every_attempt_inline(admin_client: Client, history: None) -> None:
    done = admin_client.get(reverse("admin:jobs_job_change", args=["job-done"])).content.decode()
    failed = admin_client.get(reverse("admin:jobs_job_change", args=["job-failed"])).content.decode()
    running = admin_client.get(reverse("admin:jobs_job_change", args=["job-running"])).content.decode()

    assert column(done, "attempt_id") == ["1", "2"]
    assert column(done, "node_id") == ["node-1", "node-2"]
    assert column(done, "reason") == ["ACK_TIMEOUT", "-"]
    assert column(done, "duration") == ["3.00 s", "240 ms"]
    # Attempts without a node error or without an end show the empty value, not "None".
    assert column(done, "node_error_pretty") == ["-", "-"]
    assert column(running, "duration") == ["-"]
    assert "no node had capacity within 10 s" in failed


@pytest.mark.django_db
def test_jobs_cannot_be_added_changed_or_deleted(admin_client: Client, history: None) -> None:
    listing = admin_client.get(CHANGELIST).content.decode()
    page = admin_client.get(reverse("admin:jobs_job_change", args=["job-done"])).content.decode()

    assert 'value="delete_selected"' not in listing
    assert 'value="cancel"' in listing and 'value="retry"' in listing
    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 403
    assert admin_client.get(reverse("admin:jobs_job_delete", args=["job-done"])).status_code == 403
    assert 'name="_save"' not in page
    assert 'name="attempts-0-node_id"' not in page


def act(client: Client, action: str, *job_ids: str) -> str:
    response = client.post(CHANGELIST, {"action": action, "_selected_action": list(job_ids)}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_say_the_job_is_no_longer_live_when_redis_has_forgotten_it(
    admin_client: Client, history: None
) -> None:
    cancelled = act(admin_client, "cancel", "job-running", "job-done")
    retried = act(admin_client, "retry", "job-running")

    assert (
        "Not cancelled (not live: ended longer ago than the retention, or unknown to Redis): job-"
        in cancelled
    )
    assert "job-running" in cancelled and "job-done" in cancelled
    assert (
        "Not retried (not live: ended longer ago than the retention, or unknown to Redis): job-running"
        in retried
    )


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        point_at_redis(settings, server.url)
        yield server


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_say_redis_is_unavailable_when_it_is_down(
    admin_client: Client, history: None, own_redis: RedisProcess
) -> None:
    own_redis.kill()

    cancelled = act(admin_client, "cancel", "job-running")
    retried = act(admin_client, "retry", "job-running")

    assert "Not cancelled (Redis unavailable): job-running" in cancelled
    assert "Not retried (Redis unavailable): job-running" in retried
