"""After its Redis comes back, the audit writer runs again within about a second: the Celery worker, whose
broker is that same Redis, reconnects on a short schedule (scheduler/celery.py) instead of Celery's own 2, 4,
6 ... s, which left the mirror idle for ~4 s after a 2 s Redis restart in `make chaos`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from core import audit
from core.redis import run_sync
from nodes.models import NodeEvent
from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.support.processes import CeleryProcess

pytestmark = pytest.mark.django_db(transaction=True)

# Longer than Celery's first reconnect interval (2 s), so its second attempt came only at 6 s.
DOWN_S = 2.5


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as redis:
        point_at_redis(settings, redis.url)
        yield redis


def record_node_event(node_id: str) -> None:
    run_sync(audit.record, "node", type="event", node_id=node_id, kind="registered", to="registering", at=1_700_000_000_000)


def written_within(node_id: str, timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if NodeEvent.objects.filter(node_ref=node_id).exists():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@pytest.mark.timeout(90)
def test_the_writer_runs_again_within_a_second_or_two_of_redis_returning(own_redis, server_env):
    env = {**server_env, "REDIS_URL": own_redis.url, "POOL_LEADER_ENABLED": "false", "AUDIT_INTERVAL_S": "0.2"}
    with CeleryProcess(env=env, kind="worker") as worker, CeleryProcess(env=env, kind="beat"):
        record_node_event("node-00000041")
        assert written_within("node-00000041", 20) is not None, "the writer never ran before the outage"

        own_redis.kill()
        time.sleep(DOWN_S)
        own_redis.restart()  # empty, as after a wipe: no lock, no queue
        record_node_event("node-00000042")
        waited = written_within("node-00000042", 10)

        assert worker.is_running()
        assert waited is not None, "the writer did not run within 10 s of Redis returning"
        # The worker tries its broker again at least once a second; beat ticks every 0.2 s.
        assert waited < 2.0, f"the writer ran only {waited:.1f} s after Redis returned"
    # Each failed attempt is one log line: several within the outage, not one every 2, 4, 6 ... s.
    assert worker.log_path.read_text().count("consumer: Cannot connect to") >= 3
