"""/metrics serves the pool plane read from Redis at scrape time: configuration version, epoch, leader presence
and changes, refused stale writes, and pool sizes by pool."""

from __future__ import annotations

import pytest
from django.test import Client

from core.redis import run_sync
from nodes import services
from pools import rebuild
from pools.leader import Leader
from tests.pools.test_pool_membership import start
from tests.support.metrics import scrape

pytestmark = pytest.mark.django_db(transaction=True)



def pool_nodes(pool: str, state: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("scheduler_pool_nodes", (("pool", pool), ("state", state)))


def test_pool_gauges_and_counters_follow_the_nodes_and_the_leader(client: Client) -> None:
    a, _ = run_sync(start, ["en", "zh"])
    run_sync(start, ["en", "zh"])
    run_sync(start, ["de", "en"])
    run_sync(services.drain_node, a, "ops")

    before = scrape(client)
    assert before[("scheduler_pool_leader_present", ())] == 0
    assert before[("scheduler_pool_epoch", ())] == 0
    assert before[("scheduler_pool_config_version", ())] == 2
    assert before[("scheduler_pool_leader_changes_total", ())] == 0

    leader = Leader("worker-1")
    run_sync(leader.step)
    after = scrape(client)

    assert after[("scheduler_pool_leader_present", ())] == 1
    assert after[("scheduler_pool_epoch", ())] == 1
    assert after[("scheduler_pool_config_version", ())] == 3
    assert after[("scheduler_pool_leader_changes_total", ())] == 1
    assert after[("scheduler_pool_stale_epoch_refusals_total", ())] == 0
    assert after[pool_nodes("en-zh", "total")] == 1
    assert after[pool_nodes("en-zh", "ready")] == 1
    assert after[pool_nodes("de-en", "total")] == 1
    assert after[pool_nodes("overflow", "total")] == 0
    assert after[("scheduler_redis_up", ())] == 1

    run_sync(leader.release)
    assert scrape(client)[("scheduler_pool_leader_present", ())] == 0


def test_a_write_refused_for_its_stale_epoch_is_counted(client: Client) -> None:
    run_sync(start, ["en", "zh"])
    run_sync(Leader("current").step)  # epoch 1

    outcome = run_sync(rebuild.rebuild_config, 0, "a-leader-from-before", force=True)

    assert outcome.result == "stale_epoch"
    assert scrape(client)[("scheduler_pool_stale_epoch_refusals_total", ())] == 1
