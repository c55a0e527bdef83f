"""The live page's history (core/stats.py): counters bumped in the hot path's own pipelines, one point
per interval written by exactly one instance, deltas that survive a counter reset."""

from __future__ import annotations

import asyncio

import pytest

from core import stats
from core.redis import get_redis, keys

pytestmark = pytest.mark.django_db


def test_a_point_holds_rates_failures_per_pool_counts_and_the_p95_bucket_of_dispatch_latency(settings):
    settings.STATS_SAMPLE_INTERVAL_S = 10
    previous = {"t": 100.0, "counters": {"ended": 10, "ended:DONE": 8, "dispatched:pool:en-zh": 10}}
    counters = {
        "ended": 30, "ended:DONE": 26, "failed:JOB_TIMEOUT": 2, "dispatched:pool:en-zh": 30,
        # 19 dispatches within 5 ms, one within 250 ms: the 95th percentile is in the 5 ms bucket.
        "dispatch_le:5": 19, "dispatch_le:250": 1,
    }  # fmt: skip
    point = stats.make_point(110.0, counters, previous, ready_nodes=4)
    assert point["jobs_per_s"] == 2.0
    assert point["completed"] == 18
    assert point["failed"] == {"JOB_TIMEOUT": 2}
    assert point["pools"] == {"en-zh": 20}
    assert point["p95_dispatch_ms"] == 5
    assert point["ready_nodes"] == 4
    counters["dispatch_le:250"] = 3  # now 3 of 22 are slow: p95 moves to the 250 ms bucket
    assert stats.make_point(110.0, counters, None, ready_nodes=4)["p95_dispatch_ms"] == 250


def test_a_counter_that_went_down_counts_from_zero_like_a_prometheus_reset(settings):
    previous = {"t": 0.0, "counters": {"ended": 500}}
    assert stats.make_point(10.0, {"ended": 7}, previous, ready_nodes=0)["ended"] == 7


async def test_instances_racing_for_an_interval_write_one_point(settings):
    settings.STATS_SAMPLE_INTERVAL_S = 60
    calls = []

    async def ready() -> int:
        calls.append(1)
        return 2

    stats.record_dispatch("en-zh", 3)
    stats.record_end("job-1", "FAILED", "NODE_ERROR", succeeded=False)
    stats.record_end("job-2", "DONE", "", succeeded=True)
    await stats.flush()
    won = await asyncio.gather(*(stats.sample(ready) for _ in range(5)))
    assert sorted(won) == [False] * 4 + [True]
    assert len(calls) == 1  # only the winner counted the ready nodes
    [point] = await stats.read_series()
    assert (point["ended"], point["completed"], point["failed"], point["pools"]) == (2, 1, {"NODE_ERROR": 1}, {"en-zh": 1})
    assert [f["job_id"] for f in await stats.read_recent_failures()] == ["job-1"]
    assert await get_redis().llen(keys().stats_series) == 1


async def test_the_sampler_takes_ready_nodes_from_the_shared_snapshot_and_walks_the_fleet_only_without_one(settings):
    import json

    from scheduler.background import ready_nodes

    settings.METRICS_SNAPSHOT_MAX_AGE_S = 10
    client = get_redis()
    k = keys()
    # Two nodes Redis knows as ready: what a walk of the fleet finds.
    for node_id in ("node-A", "node-B"):
        await client.sadd(k.nodes_all, node_id)
        await client.hset(k.node_meta(node_id), mapping={"status": "ready", "drained": "0"})
    assert await ready_nodes() == 2
    # The beat's shared copy says 7: the sampler answers from it with one GET and reads no node.
    rows = {"nodes": [[["ready"], 7], [["offline"], 3]]}
    await client.set(k.metrics_snapshot, json.dumps(rows), px=10_000)
    await client.config_resetstat()
    assert await ready_nodes() == 7
    commands = await client.info("commandstats")
    assert commands["cmdstat_get"]["calls"] == 1
    assert not {"cmdstat_smembers", "cmdstat_hmget"} & set(commands), commands
