"""Per-process background loop of a web instance: fires node deadlines (the beat task does the same as a
safety net, so offline detection survives any one process dying) and advertises this instance."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from typing import Any

from django.conf import settings

from core.redis import UNAVAILABLE, get_redis, keys

log = logging.getLogger(__name__)

_task: asyncio.Task[None] | None = None
_jobs_task: asyncio.Task[None] | None = None
_stats_task: asyncio.Task[None] | None = None
STARTED_AT = time.time()


LAG_SAMPLE_S = 0.25
_lag_task: asyncio.Task[None] | None = None


def ensure_started() -> None:
    """Start the loop on the running event loop once (daphne has no lifespan events to hook)."""
    global _task, _jobs_task, _stats_task, _lag_task
    loop = asyncio.get_running_loop()
    if _lag_task is None or _lag_task.done() or _lag_task.get_loop() is not loop:
        _lag_task = loop.create_task(_watch_loop(), name="scheduler-loop-lag")
        _watch_gc()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run(), name="scheduler-background")
    if _jobs_task is None or _jobs_task.done() or _jobs_task.get_loop() is not loop:
        _jobs_task = loop.create_task(_run_jobs(), name="scheduler-jobs")
    if _stats_task is None or _stats_task.done() or _stats_task.get_loop() is not loop:
        _stats_task = loop.create_task(_run_stats(), name="scheduler-stats")


async def _watch_loop() -> None:
    """The event loop's lag: how much later than asked a short sleep returns."""
    from core import metrics

    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(LAG_SAMPLE_S)
        metrics.EVENT_LOOP_LAG_SECONDS.observe(max(0.0, loop.time() - asked - LAG_SAMPLE_S))


_gc_started: dict[str, float] = {}
_gc_pauses: dict[int, Any] = {}


def _on_gc(phase: str, info: dict[str, int]) -> None:
    """Runs inside every collection (also at interpreter shutdown): no imports, nothing that can raise."""
    if phase == "start":
        _gc_started["at"] = time.perf_counter()
    elif (started := _gc_started.pop("at", None)) is not None and (pauses := _gc_pauses.get(info["generation"])):
        pauses.observe(time.perf_counter() - started)


def _watch_gc() -> None:
    from core import metrics

    _gc_pauses.update({generation: metrics.GC_PAUSE_SECONDS.labels(generation=str(generation)) for generation in (0, 1, 2)})
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


async def _run() -> None:
    from nodes import connections, services

    while True:
        try:
            if await claim_tick("node_sweep", settings.NODE_SWEEP_INTERVAL_S):
                await services.sweep_deadlines()
            await _advertise(len(connections.LOCAL))
        except UNAVAILABLE:
            log.warning("background sweep skipped: Redis unavailable", extra={"event": "redis_down"})
        except Exception:
            log.exception("background sweep failed", extra={"event": "sweep_failed"})
        await asyncio.sleep(settings.NODE_SWEEP_INTERVAL_S)


async def claim_tick(name: str, interval_s: float, now: float | None = None) -> bool:
    """Whether this instance won the current interval of the periodic whole-cluster work `name`. The node
    deadline sweep scans every node that fell due; run by every web process (one per core by default), each
    would repeat the others' scripts. The first instance to ask does it and the others skip that tick. A
    claim lives one interval, so an instance that died holding it costs at most one tick of delay (and the
    beat task sweeps as well)."""
    slot = int((time.time() if now is None else now) // interval_s)
    claimed = await get_redis().set(keys().tick_claim(name, slot), settings.INSTANCE_ID, nx=True, px=max(1, int(interval_s * 1000)))
    return bool(claimed)


async def _run_jobs() -> None:
    """Job deadlines and the pending queue need a faster beat than node liveness (ack timeout 3 s)."""
    from core import stats
    from jobs import services as jobs

    while True:
        try:
            await jobs.sweep_deadlines()
            await jobs.pump_pending()
            await stats.flush()
        except UNAVAILABLE:
            log.warning("job sweep skipped: Redis unavailable", extra={"event": "redis_down"})
        except Exception:
            log.exception("job sweep failed", extra={"event": "sweep_failed"})
        await asyncio.sleep(settings.JOB_SWEEP_INTERVAL_S)


async def _run_stats() -> None:
    """A point of the live page's history per interval, written by whichever instance claims it first."""
    from core import metrics, stats

    while True:
        interval = settings.STATS_SAMPLE_INTERVAL_S
        # Just past each interval boundary, so instances race for the same interval.
        await asyncio.sleep(interval - time.time() % interval + 0.05)
        try:
            if await stats.sample(ready_nodes):
                metrics.STATS_SAMPLES.inc()
        except UNAVAILABLE:
            log.warning("stats sample skipped: Redis unavailable", extra={"event": "redis_down"})
        except Exception:
            log.exception("stats sample failed", extra={"event": "stats_failed"})


async def ready_nodes() -> int:
    """Ready nodes for the live page's history: from the live-state snapshot the Celery beat shares through
    Redis (one GET, whatever the fleet), so a web process does not walk every node each interval. Only when
    no snapshot is there (no beat running) does the sampling instance count them itself."""
    from console.collector import cached_rows
    from nodes.services import count_ready

    rows = await cached_rows() if settings.METRICS_SNAPSHOT_MAX_AGE_S > 0 else None
    if rows is None:
        return await count_ready()
    return int(sum(value for labels, value in rows.get("nodes", []) if labels == ["ready"]))


async def _advertise(open_sockets: int) -> None:
    client = get_redis()
    k = keys()
    ttl = max(10, int(settings.NODE_SWEEP_INTERVAL_S * 3))
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(
            k.instance(settings.INSTANCE_ID),
            mapping={
                "instance": settings.INSTANCE_ID,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": int(STARTED_AT),
                "seen_at": int(time.time()),
                "node_sockets": open_sockets,
            },
        )
        pipe.expire(k.instance(settings.INSTANCE_ID), ttl)
        pipe.zadd(k.instances, {settings.INSTANCE_ID: int(time.time())})
        # Instances gone for a day are forgotten.
        pipe.zremrangebyscore(k.instances, "-inf", time.time() - 86400)
        await pipe.execute()
