"""Named non-blocking locks for periodic work: a second run (two beats, a slow worker) skips instead of
waiting, so every periodic task is safe to run twice.

A lock held for long work is short and renewed between steps (`held_lock`): a worker killed or frozen inside
it stops the work for one short TTL, not for as long as the work could ever take."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from core import metrics, scripts
from core.redis import UNAVAILABLE, get_sync_redis, keys

# Locks this process held when Redis failed under it, so their release failed: key -> token. A Redis that
# comes back from its append-only file still holds them for the rest of their TTL, and nothing else of this
# process runs inside them any more, so the next `held_lock` of the same name here releases them first.
_unreleased: dict[str, str] = {}


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


class HeldLock:
    """A lock taken with `held_lock`: `renew()` extends it by its TTL while we still hold it."""

    def __init__(self, key: str, token: str, ttl_s: float, acquired: bool) -> None:
        self.key, self.token, self.ttl_ms, self.acquired = key, token, max(1, int(ttl_s * 1000)), acquired

    def __bool__(self) -> bool:
        return self.acquired

    def renew(self) -> bool:
        """True while the lock is still ours; False once it expired and someone else may hold it."""
        if not self.acquired:
            return False
        self.acquired = bool(scripts.run_blocking("lock_renew", [self.key], [self.token, self.ttl_ms]))
        return self.acquired


@contextmanager
def held_lock(name: str, ttl_s: float) -> Iterator[HeldLock]:
    """Like `skip_if_running`, with a short TTL the holder renews between steps (`HeldLock.renew`)."""
    token = secrets.token_hex(8)
    key = keys().lock(name)
    if key in _unreleased:
        # Ours, left when Redis failed under us: release it (only if it still holds our token) and go on.
        scripts.run_blocking("lock_release", [key], [_unreleased[key]])
        del _unreleased[key]
    acquired = bool(get_sync_redis().set(key, token, nx=True, px=max(1, int(ttl_s * 1000))))
    metrics.LOCK_ACQUISITIONS.labels(lock=name, result="acquired" if acquired else "busy").inc()
    lock = HeldLock(key, token, ttl_s, acquired)
    started = time.perf_counter()
    try:
        yield lock
    finally:
        if acquired:
            metrics.LOCK_HELD_SECONDS.labels(lock=name).observe(time.perf_counter() - started)
            if lock.acquired:
                try:
                    scripts.run_blocking("lock_release", [key], [token])
                except UNAVAILABLE:
                    _unreleased[key] = token
                    raise


Renew = Callable[[], bool]
