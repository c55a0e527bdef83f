"""Cluster-wide activity history kept in Redis, for the live cluster page.

Prometheus counters live in each process; the live page must show the cluster without a Prometheus server,
so the job path also counts into a few cumulative counters in one Redis hash. It counts in memory, and each
process adds its counts to the hash every JOB_SWEEP_INTERVAL_S (`flush`, from its background loop): the job
path sends no command for them, and a process that dies loses at most that interval of live-page history
(never a job, its audit entries or its Prometheus counters' meaning). Every STATS_SAMPLE_INTERVAL_S one web instance (whoever claims the interval first)
turns the counters into a point of the series: the deltas since the previous point, the p95 of dispatch
latency from bucket deltas, and the ready node count. The series keeps one hour of points.

Counters in the hash (all cumulative):
    ended, ended:<state>, failed:<reason>       jobs reaching a terminal state (DONE, FAILED, CANCELLED)
    dispatched, dispatched:pool:<pool>          first and later attempts written as job_assign
    dispatch_le:<ms>                            dispatch latency histogram (first attempts), cumulative by bound
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from django.conf import settings

from core.redis import get_redis, keys

log = logging.getLogger(__name__)

# Upper bounds in milliseconds; the last catches everything.
DISPATCH_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, float("inf"))
RECENT_FAILURES = 50


def _bound_label(bound: float) -> str:
    return "inf" if bound == float("inf") else str(int(bound))


_counts: Counter[str] = Counter()
_failures: list[str] = []


def record_dispatch(pool: str, latency_ms: int | None) -> None:
    """Count one dispatched attempt (latency only for first attempts)."""
    _counts["dispatched"] += 1
    _counts[f"dispatched:pool:{pool}"] += 1
    if latency_ms is not None:
        bound = next(b for b in DISPATCH_BOUNDS_MS if latency_ms <= b)
        _counts[f"dispatch_le:{_bound_label(bound)}"] += 1


def record_end(job_id: str, state: str, reason: str, *, succeeded: bool) -> None:
    """Count one job reaching terminal `state`; a job that did not succeed also joins the recent failures."""
    _counts["ended"] += 1
    _counts[f"ended:{state}"] += 1
    if not succeeded:
        _counts[f"failed:{reason or 'none'}"] += 1
        _failures.append(json.dumps({"job_id": job_id, "state": state, "reason": reason or "none", "at": time.time()}))


async def flush() -> None:
    """Add this process's counts since the last flush to the shared hash, in one round trip. Counts taken
    meanwhile are kept for the next flush; on a Redis error the taken ones are put back."""
    if not _counts and not _failures:
        return
    counts, failures = dict(_counts), list(_failures)
    _counts.clear()
    _failures.clear()
    k = keys()
    try:
        async with get_redis().pipeline(transaction=False) as pipe:
            for name, value in counts.items():
                pipe.hincrby(k.stats_counters, name, value)
            if failures:
                pipe.lpush(k.stats_failures, *failures)
                pipe.ltrim(k.stats_failures, 0, RECENT_FAILURES - 1)
            await pipe.execute()
    except BaseException:
        _counts.update(counts)
        _failures[:0] = failures
        raise


def forget_unflushed() -> None:
    """Drop counts not yet flushed (when pointing the process at another Redis)."""
    _counts.clear()
    _failures.clear()


def _p95_ms(buckets: dict[str, int]) -> float | None:
    """The upper bound of the bucket holding the 95th percentile of these (non-cumulative) counts."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    seen = 0
    for bound in DISPATCH_BOUNDS_MS:
        seen += buckets.get(_bound_label(bound), 0)
        if seen >= 0.95 * total:
            return None if bound == float("inf") else bound
    return None


def make_point(
    now: float, counters: dict[str, int], previous: dict[str, Any] | None, ready_nodes: int
) -> dict[str, Any]:
    """One point of the series from the cumulative counters and the previous snapshot. A counter that went
    down (Redis lost its data) counts from zero, as Prometheus treats a counter reset."""
    before: dict[str, int] = previous.get("counters", {}) if previous else {}
    elapsed = max(1e-3, now - previous["t"]) if previous else float(settings.STATS_SAMPLE_INTERVAL_S)

    def delta(name: str) -> int:
        value, old = counters.get(name, 0), before.get(name, 0)
        return value - old if value >= old else value

    latency = {name.split(":", 1)[1]: delta(name) for name in counters if name.startswith("dispatch_le:")}
    return {
        "t": now,
        "jobs_per_s": round(delta("ended") / elapsed, 3),
        "completed": delta("ended:DONE"),
        "ended": delta("ended"),
        "dispatched": delta("dispatched"),
        "p95_dispatch_ms": _p95_ms(latency),
        "ready_nodes": ready_nodes,
        "failed": {n.split(":", 1)[1]: d for n in counters if n.startswith("failed:") and (d := delta(n))},
        "pools": {
            n.split(":", 2)[2]: d for n in counters if n.startswith("dispatched:pool:") and (d := delta(n))
        },
    }


async def sample(ready_nodes_fn: Any) -> bool:
    """Append a point for the current interval unless another instance already did; returns whether this
    call wrote it. `ready_nodes_fn` is awaited only by the instance that won the interval."""
    k = keys()
    client = get_redis()
    interval = settings.STATS_SAMPLE_INTERVAL_S
    await flush()
    now = time.time()
    slot = int(now // interval)
    if not await client.set(
        k.stats_sample_claim(slot), settings.INSTANCE_ID, nx=True, px=int(interval * 2000) + 1
    ):
        return False
    counters_raw, previous_raw = await client.hgetall(k.stats_counters), await client.get(k.stats_last)
    counters = {name: int(value) for name, value in counters_raw.items()}
    previous = json.loads(previous_raw) if previous_raw else None
    point = make_point(now, counters, previous, await ready_nodes_fn())
    keep = max(1, int(settings.STATS_HISTORY_S // interval))
    async with client.pipeline(transaction=False) as pipe:
        pipe.rpush(k.stats_series, json.dumps(point))
        pipe.ltrim(k.stats_series, -keep, -1)
        pipe.set(k.stats_last, json.dumps({"t": now, "counters": counters}))
        await pipe.execute()
    return True


async def read_series(since_s: float | None = None) -> list[dict[str, Any]]:
    """The stored points, oldest first, optionally only those newer than `since_s` seconds ago."""
    raw = await get_redis().lrange(keys().stats_series, 0, -1)
    points = [json.loads(item) for item in raw]
    if since_s is not None:
        cutoff = time.time() - since_s
        points = [p for p in points if p["t"] >= cutoff]
    return points


async def read_recent_failures(limit: int = 20) -> list[dict[str, Any]]:
    raw = await get_redis().lrange(keys().stats_failures, 0, limit - 1)
    return [json.loads(item) for item in raw]
