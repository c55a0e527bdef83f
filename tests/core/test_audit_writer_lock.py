"""The audit writer's lock is short and renewed between batches: a writer killed or frozen while holding it
stops the database mirror for one AUDIT_LOCK_TTL_S, not for minutes (a Redis wipe in that window would take
the backlog with it)."""

from __future__ import annotations

import time

import pytest

from core import audit, locks, tasks
from core.redis import UNAVAILABLE, get_sync_redis, keys, run_sync
from nodes.models import NodeEvent

LOCK = "core.write_audit"


def record_node_event(node_id: str) -> None:
    run_sync(audit.record, "node", type="event", node_id=node_id, kind="registered", to="registering", at=1_700_000_000_000)


@pytest.mark.django_db
def test_a_writer_that_died_holding_the_lock_stops_the_mirror_for_one_short_ttl_only(settings):
    settings.AUDIT_LOCK_TTL_S = 2.0
    # A writer takes the lock and dies inside it: the context is never left, the lock never released.
    dead = locks.held_lock(LOCK, ttl_s=settings.AUDIT_LOCK_TTL_S)
    assert dead.__enter__()
    assert 0 < get_sync_redis().pttl(keys().lock(LOCK)) <= 2000
    record_node_event("node-00000011")

    assert tasks.write_audit() == 0  # still held
    time.sleep(2.2)
    assert tasks.write_audit() == 1
    assert NodeEvent.objects.filter(node_ref="node-00000011").count() == 1
    assert get_sync_redis().get(keys().lock(LOCK)) is None


@pytest.mark.django_db
def test_the_writer_renews_its_lock_between_batches_and_stops_once_it_lost_it(settings):
    settings.AUDIT_BATCH_SIZE = 1
    with locks.held_lock(LOCK, ttl_s=1.0) as lock:
        for index in range(3):
            record_node_event(f"node-0000002{index}")
        renewals = []

        def renew() -> bool:
            renewals.append(lock.renew())
            return renewals[-1]

        # A TTL no renewal would give: after the drain the lock has its own 1 s again, so it was renewed.
        get_sync_redis().pexpire(keys().lock(LOCK), 60_000)
        assert audit.drain(renew=renew) == 3
        assert 0 < get_sync_redis().pttl(keys().lock(LOCK)) <= 1000
        # Someone else holds the lock (ours expired): the next renewal says so and the writer stops.
        get_sync_redis().set(keys().lock(LOCK), "another-writer", px=5000)
        record_node_event("node-00000029")
        assert audit.drain(renew=renew) == 0
    assert renewals[:3] == [True, True, True] and renewals[-1] is False
    # Leaving the context does not release another writer's lock.
    assert get_sync_redis().get(keys().lock(LOCK)) == "another-writer"


@pytest.mark.django_db(transaction=True)
def test_a_writer_whose_redis_died_inside_the_lock_takes_it_back_at_once_when_redis_returns_with_its_data(
    settings, tmp_path
):
    from supervisor.embedded_redis import RedisProcess
    from tests.conftest import point_at_redis

    settings.AUDIT_LOCK_TTL_S = 10.0
    with RedisProcess(data_dir=tmp_path / "redis") as redis:
        point_at_redis(settings, redis.url)
        # Redis dies while the writer holds its lock: the release fails, and the append-only file keeps the lock.
        with pytest.raises(UNAVAILABLE), locks.held_lock(LOCK, ttl_s=settings.AUDIT_LOCK_TTL_S) as lock:
            assert lock
            time.sleep(1.1)  # everysec: the lock is in the file
            redis.kill()
        redis.restart()
        assert get_sync_redis().pttl(keys().lock(LOCK)) > 5000, "the lock should have come back with the data"
        record_node_event("node-00000031")

        # The same process runs the writer again: it releases its own stale lock instead of waiting 10 s.
        assert tasks.write_audit() == 1
        assert NodeEvent.objects.filter(node_ref="node-00000031").count() == 1

        # Another writer's lock is never taken: only a token this process left behind is released.
        get_sync_redis().set(keys().lock(LOCK), "another-writer", px=5000)
        record_node_event("node-00000032")
        assert tasks.write_audit() == 0
