"""Named non-blocking locks for periodic work: a second run (two beats, a slow worker) skips instead of
waiting, so every periodic task is safe to run twice."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from scheduler import scripts
from scheduler.redis import get_sync_redis, keys


@contextmanager
def skip_if_running(name: str, ttl_s: int = 60) -> Iterator[bool]:
    token = secrets.token_hex(8)
    key = keys().lock(name)
    acquired = bool(get_sync_redis().set(key, token, nx=True, ex=ttl_s))
    try:
        yield acquired
    finally:
        if acquired:
            scripts.run_blocking("lock_release", [key], [token])
