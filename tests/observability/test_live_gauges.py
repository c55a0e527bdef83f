"""The Redis-state gauges of a scrape: in-flight jobs by state, jobs waiting for capacity, pool slots and the
audit writer's backlog, read from Redis at each scrape."""

from __future__ import annotations

import time

import pytest

from core import audit
from core.redis import run_sync
from jobs import services as jobs
from tests.jobs.support import AUDIO
from tests.support.metrics import scrape

pytestmark = pytest.mark.django_db(transaction=True)



def test_a_job_without_a_node_shows_as_in_flight_and_waiting_and_the_unwritten_audit_as_backlog(client):
    before = scrape(client)
    assert before[("scheduler_jobs_in_flight", (("state", "SELECTING"),))] == 0
    assert before[("scheduler_jobs_waiting", ())] == 0
    assert before[("scheduler_audit_backlog_entries", ())] == 0
    assert before[("scheduler_audit_lag_seconds", ())] == 0

    job = run_sync(jobs.submit_job, {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO})
    time.sleep(0.05)
    after = scrape(client)
    assert after[("scheduler_jobs_in_flight", (("state", "SELECTING"),))] == 1
    assert after[("scheduler_jobs_waiting", ())] == 1
    assert after[("scheduler_pool_slots", (("pool", "overflow"), ("state", "capacity")))] == 0
    assert after[("scheduler_audit_backlog_entries", ())] >= 1  # the job's entry; no writer runs here
    assert after[("scheduler_audit_lag_seconds", ())] > 0

    run_sync(jobs.cancel_job, job.job_id, "test")
    audit.drain()
    done = scrape(client)
    assert done[("scheduler_jobs_in_flight", (("state", "SELECTING"),))] == 0
    assert done[("scheduler_jobs_waiting", ())] == 0
    assert done[("scheduler_audit_backlog_entries", ())] == 0
    cancelled = ("scheduler_jobs_total", (("reason", "CANCELLED"), ("state", "CANCELLED")))
    assert done[cancelled] == before[cancelled] + 1
