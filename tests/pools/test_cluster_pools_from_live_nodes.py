"""End to end: pools come from nodes connected over real WebSockets to two web instances, with two Celery
workers competing for the leader lease and beat running."""

from __future__ import annotations

import asyncio

import pytest

from pools import services as pools
from pools.eligibility import OVERFLOW, eligible_pools
from tests.pools import cluster_support
from tests.pools.cluster_support import (
    Cluster,
    async_wait_until,
    running_nodes,
    simulated_node,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The cluster's fixtures (kept out of tests/pools/conftest.py); `redis_url` replaces the session-wide one.
cluster, cluster_redis, node_token, pool_timings, redis_url = (
    cluster_support.cluster,
    cluster_support.cluster_redis,
    cluster_support.node_token,
    cluster_support.pool_timings,
    cluster_support.redis_url,
)


async def test_three_live_nodes_make_pools_en_zh_of_two_and_de_en_zh_of_one_with_the_right_eligibility(
    cluster: Cluster, node_token: str
):
    """Nodes {en,zh} on web A, {en,zh} on web B and {de,en,zh} on web A give the pools `en-zh` (2 members)
    and `de-en-zh` (1) in the configuration and the membership sets, also after the leader's rebuilds have
    run over them; eligibility on that live configuration: en->zh both, de->zh only de-en-zh, auto->en both.

    Timings: node heartbeat 15 s / timeout 45 s scaled to 0.5 s / 1.5 s; lease TTL 15 s / renew 2 s /
    give-up 10 s / rebuild 10 s scaled to 3 s / 0.3 s / 2 s / 1 s. The leader rebuilds every 1 s, so waiting
    3 rebuild intervals (3 s, the analogue of 30 s) lets it rewrite the configuration if it disagreed with
    the live nodes."""
    web_a, web_b = cluster.webs
    nodes = [
        simulated_node(web_a, node_token, ["en", "zh"], "en-zh-1"),
        simulated_node(web_b, node_token, ["zh", "en"], "en-zh-2"),
        simulated_node(web_a, node_token, ["de", "en", "zh"], "de-en-zh"),
    ]
    async with running_nodes(nodes):
        first, second, third = (node.node_id for node in nodes)
        expected_members = {"en-zh": {first, second}, "de-en-zh": {third}}

        def settled() -> bool:
            return set(cluster.pools()) == {"en-zh", "de-en-zh"} and all(
                cluster.members(name) == ids for name, ids in expected_members.items()
            )

        await async_wait_until(settled, 5.0, "pools and memberships from the live nodes", cluster=cluster)
        pool_ids = cluster.pools()
        leader, epoch = await cluster.leader()
        # The leader rebuilds every second from the live nodes: over 3 s it must keep both pools, their ids
        # and their members (it writes only when something differs).
        await asyncio.sleep(3 * 1.0)
        await async_wait_until(settled, 0.1, "pools after three leader rebuilds", cluster=cluster)
        assert cluster.pools() == pool_ids
        assert len(set(pool_ids.values())) == 2
        assert cluster.members(OVERFLOW) == set()
        assert cluster.lease() == (leader, epoch), "the leader changed while nothing failed"

        config = await pools.current_config()
        assert {(p.name, p.languages) for p in config.pools} == {
            ("en-zh", ("en", "zh")),
            ("de-en-zh", ("de", "en", "zh")),
        }

        def names(src: str, tgt: str) -> set[str]:
            return {pool.name for pool in eligible_pools(config.pools, src, tgt)}

        assert names("en", "zh") == {"en-zh", "de-en-zh"}
        assert names("de", "zh") == {"de-en-zh"}
        assert names("auto", "en") == {"en-zh", "de-en-zh"}
        # The overflow pool is always a candidate, its members filtered by their own languages.
        assert [p.name for p in eligible_pools(config.with_overflow(), "de", "zh")] == ["de-en-zh", OVERFLOW]
