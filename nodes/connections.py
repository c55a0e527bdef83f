"""How frames reach a node, wherever its connection lives.

In-process when the socket is on this instance (no Redis round trip), through the channel layer when it is
on another instance, by HTTP POST for HTTP nodes. Delivery is best effort by design: guarantees come from
state in Redis and timeouts, never from the transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import httpx
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)


class LocalConnection(Protocol):
    async def send_frame(self, frame: dict[str, Any]) -> bool: ...

    async def close_connection(self, code: int, conn_id: str | None) -> None: ...


# channel name -> consumer, for sockets held by this process.
LOCAL: dict[str, LocalConnection] = {}
# token id -> open sockets of this process, for NODE_MAX_SOCKETS_PER_TOKEN. Per process, never shared: a count
# kept in Redis would leak whenever a process died with sockets open.
_per_token: dict[str, int] = {}
_background: set[asyncio.Task[Any]] = set()


def count_socket(token_id: str, delta: int) -> None:
    if not token_id:
        return
    count = _per_token.get(token_id, 0) + delta
    if count > 0:
        _per_token[token_id] = count
    else:
        _per_token.pop(token_id, None)


def sockets_of(token_id: str) -> int:
    return _per_token.get(token_id, 0)


def spawn(coro: Any) -> None:
    """Run a best-effort side effect without awaiting it, keeping a reference so it is not collected."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def send_frame(channel: str, frame: dict[str, Any]) -> bool:
    """False when the frame certainly did not leave: the socket is on this instance and has closed. Through
    the channel layer nobody can tell, so True."""
    if (local := LOCAL.get(channel)) is not None:
        return await local.send_frame(frame)
    layer = get_channel_layer()
    if layer is None:
        return False
    await layer.send(channel, {"type": "node.frame", "frame": frame})
    return True


async def close_connection(channel: str, code: int, conn_id: str | None = None) -> None:
    """Close a node socket; with `conn_id`, only if that socket still is that connection."""
    if (local := LOCAL.get(channel)) is not None:
        await local.close_connection(code, conn_id)
        return
    layer = get_channel_layer()
    if layer is not None:
        await layer.send(channel, {"type": "node.close", "code": code, "conn_id": conn_id})


async def post_frame(url: str, frame: dict[str, Any]) -> bool:
    """POST a frame to an HTTP node; True when it answered 2xx within the dispatch timeout."""
    try:
        async with httpx.AsyncClient(timeout=settings.NODE_HTTP_DISPATCH_TIMEOUT_S) as client:
            response = await client.post(url, json=frame)
        return 200 <= response.status_code < 300
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        log.warning("HTTP node did not take a frame", extra={"event": "http_dispatch_failed", "reason": type(exc).__name__})
        return False
