"""Counters add up across processes: two web instances and a Celery worker (prefork) and beat write their
samples to one multiprocess folder, and either instance's /metrics serves the sum, so the jobs by terminal
state equal, exactly, what the load generator saw end."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from jobs.loadgen import LoadConfig, run_load
from tests.jobs.support import ready_fleet
from tests.support.metrics import scrape_url
from tests.support.processes import CeleryProcess

pytestmark = pytest.mark.django_db(transaction=True)


def jobs_by_state(url: str) -> Counter[str]:
    totals: Counter[str] = Counter()
    for (name, labels), value in scrape_url(url).items():
        if name == "scheduler_jobs_total":
            totals[dict(labels)["state"]] += int(value)
    return totals


@pytest.mark.timeout(150)
async def test_jobs_by_terminal_state_sum_exactly_to_what_the_load_generator_saw(
    start_job_server, server_env, node_token, jobs_key, tmp_path
):
    shared = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "LOG_LEVEL": "WARNING",
        # Short job timeouts so that nodes dropping jobs make timeouts, retries and failures, not only DONE.
        "JOB_TIMEOUT_S": "1", "JOB_ACK_TIMEOUT_S": "1", "JOB_MAX_ATTEMPTS": "2",
    }  # fmt: skip
    first = start_job_server(**shared)
    second = start_job_server(**shared)
    env = {**server_env, **shared, "POOL_LEADER_ENABLED": "false"}
    worker = CeleryProcess(env=env, kind="worker", extra_args=["--pool", "prefork", "--concurrency", "2"])
    with worker, CeleryProcess(env=env, kind="beat"):
        nodes = {
            "processing_ms": 20,
            "failure_rate": 0.15,
            "silent_drop_rate": 0.1,
            "heartbeat_interval_s": 5,
        }
        async with (
            ready_fleet(first.ws_url, node_token, 2, seed=11, **nodes),
            ready_fleet(second.ws_url, node_token, 2, seed=12, **nodes),
        ):
            reports = await asyncio.gather(
                *(
                    run_load(
                        LoadConfig(
                            api_key=jobs_key,
                            url=s.url,
                            count=40,
                            concurrency=4,
                            src_lang="en",
                            tgt_lang="zh",
                            wait_s=10,
                        )
                    )
                    for s in (first, second)
                )
            )
        seen = reports[0].terminal + reports[1].terminal
        assert sum(seen.values()) == 80, [r.format_text() for r in reports]
        assert seen["FAILED"] > 0 and seen["DONE"] > 0, seen  # both kinds of ending happened
        writers = {path.stem.rsplit("_", 1)[1] for path in tmp_path.glob("counter_*.db")}
        assert len(writers) >= 3, writers  # both web instances and at least one Celery process counted

        served = jobs_by_state(first.url)
        assert served == seen
        assert jobs_by_state(second.url) == seen
