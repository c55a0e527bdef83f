"""End to end: two web instances create the pools of two new language sets at the same moment; neither
creation is lost, and the leader's rebuild afterwards keeps every pool with its id."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.pools import cluster_support
from tests.pools.cluster_support import (
    POOL_TIMINGS,
    RENEW_S,
    Cluster,
    WireNode,
    async_wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The cluster's fixtures (kept out of tests/pools/conftest.py); `redis_url` replaces the session-wide one.
cluster, cluster_redis, node_token, redis_url = (
    cluster_support.cluster,
    cluster_support.cluster_redis,
    cluster_support.node_token,
    cluster_support.redis_url,
)

# Fresh language sets, two per round (real ISO codes: the API validates 2-3 lowercase letters).
ROUNDS = [
    (["ar", "bg"], ["cs", "da"]),
    (["el", "fi"], ["he", "hi"]),
    (["hu", "id"], ["it", "ja"]),
    (["ko", "lt"], ["lv", "nl"]),
    (["pl", "pt"], ["ro", "ru"]),
]
LONG_REBUILD_S = 60.0


@pytest.fixture
def pool_timings() -> dict[str, str]:
    # The leader's periodic rebuild is pushed out of the test's way (it runs once, forced, when the leader
    # acquires): a periodic rebuild that happened to read a node between its registration and its pool's
    # creation would create the pool itself, so each round would count one version instead of two. The
    # leader still holds the lease and renews it every 0.3 s.
    return {**POOL_TIMINGS, "POOL_REBUILD_INTERVAL_S": str(LONG_REBUILD_S)}


@contextlib.asynccontextmanager
async def wire_nodes():
    opened: list[WireNode] = []
    try:
        yield opened
    finally:
        await asyncio.gather(*(node.close() for node in opened), return_exceptions=True)


async def create_concurrently(
    cluster: Cluster, token: str, opened: list[WireNode], rounds=ROUNDS
) -> list[str]:
    """Run the rounds; returns a line per round for the report."""
    web_a, web_b = cluster.webs
    report = []
    for first_set, second_set in rounds:
        before_version = cluster.config()["version"]
        before_pools = cluster.pools()
        before_history = len(cluster.history())
        first = await WireNode.connect(web_a, token, first_set)
        second = await WireNode.connect(web_b, token, second_set)
        opened += [first, second]
        started = time.perf_counter()
        first_id, second_id = await asyncio.gather(first.register(), second.register())
        spread = time.perf_counter() - started
        first_pool, second_pool = "-".join(first_set), "-".join(second_set)

        after = cluster.config()
        pools = cluster.pools()
        assert after["version"] == before_version + 2, (before_version, after)
        assert pools.keys() == {*before_pools, first_pool, second_pool}, pools
        assert {name: pools[name] for name in before_pools} == before_pools, "an existing pool changed id"
        assert len(set(pools.values())) == len(pools), f"two pools share an id: {pools}"
        new_entries = cluster.history()[before_history:]
        assert sorted((h["version"], tuple(h["change"]["added"])) for h in new_entries) in (
            [(before_version + 1, (first_pool,)), (before_version + 2, (second_pool,))],
            [(before_version + 1, (second_pool,)), (before_version + 2, (first_pool,))],
        ), new_entries
        assert {h["by"] for h in new_entries} == {"web-a", "web-b"}
        expected = {first_pool: {first_id}, second_pool: {second_id}}
        await async_wait_until(
            lambda expected=expected: all(cluster.members(name) == ids for name, ids in expected.items()),
            2.0, "each node a member of its new pool", cluster=cluster,
        )  # fmt: skip
        order = " then ".join(h["by"] for h in new_entries)
        report.append(f"v{before_version}->v{after['version']} ({order}, registers {spread * 1000:.0f} ms)")
    return report


async def test_two_instances_creating_pools_of_new_sets_at_the_same_moment_lose_neither(
    cluster: Cluster, node_token: str
):
    """Five rounds; in each, one node of a new language set registers on web A and one of another new set on
    web B, both register frames sent at once (`asyncio.gather`). After each round both pools exist in one
    configuration with distinct ids, every earlier pool keeps its id, and the version rose by exactly 2 with
    one history entry per creation (one by each instance): no lost update.

    Timings: node heartbeat 15 s / timeout 45 s scaled to 0.5 s / 1.5 s (the nodes heartbeat all along);
    lease TTL 15 s / renew 2 s / give-up 10 s scaled to 3 s / 0.3 s / 2 s; the periodic rebuild is set to 60 s
    here (see `pool_timings`)."""
    await cluster.leader()
    async with wire_nodes() as opened:
        report = await create_concurrently(cluster, node_token, opened)
    print("\nconcurrent creation: " + "; ".join(report))
    assert len(cluster.pools()) == 2 * len(ROUNDS)


async def test_a_requested_rebuild_after_concurrent_creations_runs_within_a_renew_round_and_keeps_every_id(
    cluster: Cluster, node_token: str
):
    """After the concurrent creations, an operator asks for a rebuild (`pools.rebuild.request_rebuild`, the
    "rebuild now" action). Its docstring promises the leader picks it up at its next round, within
    POOL_LEASE_RENEW_S; the forced rewrite must keep every pool with its id and membership.

    Timings: renew 2 s scaled to 0.3 s, so the rewrite must appear within 0.3 s + 0.7 s slack (the analogue of
    a few seconds); the periodic rebuild is 60 s here, so only the request can cause a write in that time.
    Lease TTL 15 s / give-up 10 s scaled to 3 s / 2 s; node heartbeat 15 s scaled to 0.5 s."""
    holder, epoch = await cluster.leader()
    async with wire_nodes() as opened:
        await create_concurrently(cluster, node_token, opened, ROUNDS[:2])
        pools_before = cluster.pools()
        members_before = {name: cluster.members(name) for name in pools_before}
        version = cluster.config()["version"]

        from pools import rebuild

        await rebuild.request_rebuild("operator")
        waited = 0.0
        with contextlib.suppress(AssertionError):
            waited = await async_wait_until(lambda: cluster.config()["version"] > version, RENEW_S + 0.7, "")
        config = cluster.config()
        assert config["version"] == version + 1, (
            f"the requested rebuild did not run within {RENEW_S + 0.7:.1f} s (renew interval + slack; the "
            f"periodic rebuild is {LONG_REBUILD_S:g} s here, so only the request could have caused it)"
        )
        assert (config["epoch"], config["generated_by"]) == (epoch, holder)
        assert cluster.pools() == pools_before
        await asyncio.sleep(RENEW_S * 2)  # the reconcile after the rewrite
        assert {name: cluster.members(name) for name in pools_before} == members_before
        print(f"\nrequested rebuild written after {waited:.2f} s")
