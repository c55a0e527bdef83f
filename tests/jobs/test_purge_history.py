"""purge_history deletes ended jobs (with their attempts), node events and pool configuration versions older
than the cutoff, keeps the newest versions whatever their age, and with --dry-run only counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.management.commands.purge_history import KEEP_POOL_VERSIONS, purge
from jobs.models import Job, JobAttempt
from nodes.models import NodeEvent
from pools.models import PoolConfigVersion

pytestmark = pytest.mark.django_db

# Far enough from the cutoff that the time the command takes to start cannot move a row across it.
MARGIN = timedelta(minutes=5)


def make_job(job_id: str, *, created_at: datetime, ended_at: datetime | None, attempts: int = 1) -> None:
    job = Job.objects.create(job_id=job_id, state="DONE" if ended_at else "DISPATCHED", created_at=created_at,
                             ended_at=ended_at, seq=1)  # fmt: skip
    for attempt_id in range(1, attempts + 1):
        JobAttempt.objects.create(job=job, attempt_id=attempt_id, state="DONE", started_at=created_at, seq=1)


def make_event(node_ref: str, at: datetime) -> None:
    NodeEvent.objects.create(node_ref=node_ref, kind=NodeEvent.Kind.REGISTERED, at=at)


def make_version(version: int, generated_at: datetime) -> None:
    PoolConfigVersion.objects.create(
        version=version, epoch=1, generated_by="leader", generated_at=generated_at, pools=[], change={}
    )


def remaining_jobs() -> list[str]:
    return sorted(Job.objects.values_list("job_id", flat=True))


@pytest.fixture
def old_and_new_history() -> datetime:
    """History on both sides of a 30-day cutoff; returns the cutoff."""
    cutoff = timezone.now() - timedelta(days=30)
    make_job("old-done", created_at=cutoff - MARGIN * 2, ended_at=cutoff - MARGIN, attempts=2)
    make_job("old-never-ended", created_at=cutoff - MARGIN, ended_at=None)
    make_job("created-old-ended-new", created_at=cutoff - MARGIN, ended_at=cutoff + MARGIN)
    make_job("new-done", created_at=cutoff + MARGIN, ended_at=cutoff + MARGIN * 2)
    make_job("new-running", created_at=cutoff + MARGIN, ended_at=None)
    make_event("old-event", cutoff - MARGIN)
    make_event("new-event", cutoff + MARGIN)
    # Twelve old versions and one new: the newest ten overall stay, so the three oldest go.
    for version in range(1, 13):
        make_version(version, cutoff - timedelta(days=13 - version))
    make_version(13, cutoff + MARGIN)
    return cutoff


def test_it_deletes_history_older_than_the_cutoff_and_reports_what_it_deleted(
    old_and_new_history: datetime,
) -> None:
    out = StringIO()
    call_command("purge_history", "--older-than-days", "30", stdout=out)

    assert remaining_jobs() == ["created-old-ended-new", "new-done", "new-running"]
    assert not JobAttempt.objects.filter(job_id__in=["old-done", "old-never-ended"]).exists()
    assert list(NodeEvent.objects.values_list("node_ref", flat=True)) == ["new-event"]
    assert sorted(PoolConfigVersion.objects.values_list("version", flat=True)) == list(range(4, 14))
    assert "Deleted history from before" in out.getvalue()
    assert "jobs:                   2 (with 3 attempts)" in out.getvalue()
    assert "node events:            1" in out.getvalue()
    assert "pool config versions:   3" in out.getvalue()


def test_a_dry_run_counts_the_same_rows_and_deletes_nothing(old_and_new_history: datetime) -> None:
    out = StringIO()
    call_command("purge_history", "--older-than-days", "30", "--dry-run", stdout=out)

    assert "Would delete history from before" in out.getvalue()
    assert "jobs:                   2 (with 3 attempts)" in out.getvalue()
    assert "node events:            1" in out.getvalue()
    assert "pool config versions:   3" in out.getvalue()
    assert (Job.objects.count(), JobAttempt.objects.count(), NodeEvent.objects.count()) == (5, 6, 2)
    assert PoolConfigVersion.objects.count() == 13


def test_a_row_exactly_at_the_cutoff_stays_and_one_just_before_goes() -> None:
    cutoff = timezone.now() - timedelta(days=7)
    just_before = cutoff - timedelta(microseconds=1)
    make_job("at-cutoff", created_at=cutoff - MARGIN, ended_at=cutoff)
    make_job("just-before", created_at=cutoff - MARGIN, ended_at=just_before)
    make_event("at-cutoff", cutoff)
    make_event("just-before", just_before)

    purged = purge(cutoff)

    assert (purged.jobs, purged.attempts, purged.node_events) == (1, 1, 1)
    assert remaining_jobs() == ["at-cutoff"]
    assert list(NodeEvent.objects.values_list("node_ref", flat=True)) == ["at-cutoff"]


def test_the_newest_versions_stay_even_when_all_are_older_than_the_cutoff() -> None:
    cutoff = timezone.now()
    for version in range(1, KEEP_POOL_VERSIONS + 4):
        make_version(version, cutoff - timedelta(days=100 - version))

    assert purge(cutoff).pool_versions == 3

    assert sorted(PoolConfigVersion.objects.values_list("version", flat=True)) == list(
        range(4, KEEP_POOL_VERSIONS + 4)
    )


def test_it_deletes_in_batches_until_nothing_old_is_left() -> None:
    cutoff = timezone.now()
    for n in range(7):
        make_job(f"old-{n}", created_at=cutoff - timedelta(days=2), ended_at=cutoff - timedelta(days=1))
    for n in range(5):
        make_event(f"old-{n}", cutoff - timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        purged = purge(cutoff, batch_size=3)

    deletes = [query["sql"].split(" WHERE")[0] for query in queries if query["sql"].startswith("DELETE")]
    assert deletes.count('DELETE FROM "jobs_job"') == 3
    assert deletes.count('DELETE FROM "nodes_nodeevent"') == 2
    assert (purged.jobs, purged.attempts, purged.node_events) == (7, 7, 5)
    assert (Job.objects.count(), JobAttempt.objects.count(), NodeEvent.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize("days", ["0", "-3"])
def test_fewer_than_one_day_is_refused(days: str) -> None:
    make_job("new", created_at=timezone.now(), ended_at=timezone.now())

    with pytest.raises(CommandError, match="--older-than-days must be 1 or more"):
        call_command("purge_history", "--older-than-days", days)

    assert remaining_jobs() == ["new"]


def test_the_number_of_days_is_required() -> None:
    with pytest.raises(CommandError, match="--older-than-days"):
        call_command("purge_history")
