"""Per-process background loop of a web instance: fires node deadlines (the beat task does the same as a
safety net, so offline detection survives any one process dying) and advertises this instance."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from django.conf import settings

from scheduler.redis import UNAVAILABLE, get_redis, keys

log = logging.getLogger(__name__)

_task: asyncio.Task[None] | None = None
STARTED_AT = time.time()


def ensure_started() -> None:
    """Start the loop on the running event loop once (daphne has no lifespan events to hook)."""
    global _task
    if _task is None or _task.done() or _task.get_loop() is not asyncio.get_running_loop():
        _task = asyncio.get_running_loop().create_task(_run(), name="scheduler-background")


async def _run() -> None:
    from nodes import connections, services

    while True:
        try:
            await services.sweep_deadlines()
            await _advertise(len(connections.LOCAL))
        except UNAVAILABLE:
            log.warning("background sweep skipped: Redis unavailable", extra={"event": "redis_down"})
        except Exception:
            log.exception("background sweep failed", extra={"event": "sweep_failed"})
        await asyncio.sleep(settings.NODE_SWEEP_INTERVAL_S)


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
