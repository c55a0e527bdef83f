"""Named non-blocking locks for periodic work: a second run (two beats, a slow worker) skips instead of
waiting, so every periodic task is safe to run twice."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from core import metrics, scripts
from core.redis import get_sync_redis, keys


@contextmanager
def skip_if_running(name: str, ttl_s: int = 60) -> Iterator[bool]:
    token = secrets.token_hex(8)
    key = keys().lock(name)
    acquired = bool(get_sync_redis().set(key, token, nx=True, ex=ttl_s))
    metrics.LOCK_ACQUISITIONS.labels(lock=name, result="acquired" if acquired else "busy").inc()
    started = time.perf_counter()
    try:
        yield acquired
    finally:
        if acquired:
            metrics.LOCK_HELD_SECONDS.labels(lock=name).observe(time.perf_counter() - started)
            scripts.run_blocking("lock_release", [key], [token])
