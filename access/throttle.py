"""Failed authentication, counted per client address across instances: past AUTH_FAILURE_LIMIT failures within
AUTH_FAILURE_WINDOW_S an address is refused before its credential is looked at.

Secrets here are 256 random bits, so nothing can be guessed; the limit is about cost. Every wrong key or token
is a database read, and a flood of them slowed real node handshakes about fourfold. A refused address costs
one Redis GET instead.

Kinds: `api_key` (REST), `node_token` (node WebSocket handshake and HTTP node link). Admin logins are
django-axes' (settings.AXES_*), which counts them in the database and answers 429 itself.

The limiter fails open: with Redis down, credentials are checked as before (the database still decides), and
the failure is only logged. Behind a proxy the address is the one the server took from the proxy's headers
(uvicorn `--proxy-headers --forwarded-allow-ips`), or every client shares the proxy's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from core import metrics, scripts
from core.redis import UNAVAILABLE, get_redis, keys

log = logging.getLogger(__name__)

KINDS = ("api_key", "node_token")


@dataclass(frozen=True)
class Throttled(Exception):
    """An address over the limit; `retry_after_s` until its window ends."""

    kind: str
    retry_after_s: int


def _key(kind: str, address: str) -> str:
    # IPv6 addresses hold colons, harmless in a key; the hash tag keeps the one key on its own slot anyway.
    return keys().auth_failures(kind, address or "unknown")


async def check(kind: str, address: str) -> None:
    """Raise Throttled when `address` failed `kind` authentication too often lately."""
    limit = settings.AUTH_FAILURE_LIMIT
    if limit <= 0:
        return
    try:
        async with get_redis().pipeline(transaction=False) as pipe:
            pipe.get(_key(kind, address))
            pipe.pttl(_key(kind, address))
            count, ttl_ms = await pipe.execute()
    except UNAVAILABLE as exc:
        log.warning("auth failure limit not checked: Redis unavailable", extra={"event": "auth_throttle_unavailable", "reason": type(exc).__name__})
        return
    if count is not None and int(count) >= limit:
        metrics.AUTH_THROTTLED.labels(kind=kind).inc()
        raise Throttled(kind, max(1, -(-int(ttl_ms) // 1000)) if ttl_ms and ttl_ms > 0 else 1)


async def record_failure(kind: str, address: str) -> None:
    """Count one wrong credential from `address`."""
    metrics.AUTH_FAILURES.labels(kind=kind).inc()
    if settings.AUTH_FAILURE_LIMIT <= 0:
        return
    try:
        count, _ = await scripts.run("auth_failure", [_key(kind, address)], [settings.AUTH_FAILURE_WINDOW_S * 1000])
    except UNAVAILABLE:
        return
    if int(count) == settings.AUTH_FAILURE_LIMIT:
        # Once per window and address, not once per refused attempt.
        log.warning(
            "address over the failed-authentication limit",
            extra={"event": "auth_throttled", "reason": f"{kind}: {int(count)} failures", "client": address},
        )
