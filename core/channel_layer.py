"""The channel layer, made to outlive Redis outages.

A consumer's receive loop awaits the channel layer; channels-redis raises when Redis is unreachable, which
ends the consumer and closes every node socket of the instance (1011). Node sockets must stay open through
an outage (DESIGN principle 6), so receiving waits and retries instead: messages sent meanwhile are lost,
which the channel layer's at-most-once contract allows anyway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.core import RedisChannelLayer

from core import metrics
from core.redis import UNAVAILABLE

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.1
RETRY_MAX_S = 2.0


class ResilientRedisChannelLayer(RedisChannelLayer):
    async def receive(self, channel: str) -> dict[str, Any]:
        delay = RETRY_MIN_S
        while True:
            try:
                return await super().receive(channel)
            except UNAVAILABLE as exc:
                metrics.REDIS_ERRORS.labels(operation="channel_receive").inc()
                log.warning(
                    "channel layer receive failed: Redis unavailable; retrying",
                    extra={"event": "redis_down", "reason": f"{type(exc).__name__}: {exc}"[:200]},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
