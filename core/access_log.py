"""One access line per HTTP request and WebSocket handshake (`scheduler.access`, off unless ACCESS_LOG=true),
written by the application itself, so the lines are the same under uvicorn and daphne.

Only the path is logged, never the query string: the real node sends its token as `?token=`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("scheduler.access")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def logged(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app`, logging its answer; costs one level check per request while the log is off."""
    if scope["type"] not in ("http", "websocket") or not log.isEnabledFor(logging.INFO):
        await app(scope, receive, send)
        return
    client = scope.get("client")
    conn = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("path", "")
    started = time.perf_counter()
    answer: dict[str, Any] = {}

    async def send_logged(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            answer["status"] = message["status"]
        elif kind == "websocket.accept":
            answer["accepted"] = True
            log.info("%s WSCONNECT %s", conn, path, extra={"event": "access", "conn": conn, "code": 101})
        elif kind == "websocket.close" and not answer.get("accepted"):
            answer["refused"] = True
            log.info("%s WSREJECT %s", conn, path, extra={"event": "access", "conn": conn, "code": 403})
        await send(message)

    try:
        await app(scope, receive, send_logged)
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if scope["type"] == "http":
            status = answer.get("status")
            log.info(
                "%s %s %s %s %.1fms", conn, scope.get("method", "-"), path, status or "-", elapsed_ms,
                extra={"event": "access", "conn": conn, "code": status},
            )  # fmt: skip
        elif answer.get("accepted"):
            log.info("%s WSDISCONNECT %s", conn, path, extra={"event": "access", "conn": conn})
