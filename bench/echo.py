"""The raw limit's server side: a bare ASGI application that does no work at all, served by the same server
software as the scheduler (daphne through `supervisor.serve`, or uvicorn).

It carries our protocol's traffic of one job with the same sizes: an HTTP POST of a job-submission-sized
body answered by a job-sized JSON, and on a WebSocket, each message (sized like a `job_result`) answered
by one message sized like a `job_assign`. GET /healthz answers for the readiness check.
"""

from __future__ import annotations

from typing import Any

# Measured on the scheduler: the 200 answer of POST /api/v1/jobs?wait= for a finished job, and the
# job_assign frame for 3,200 bytes of audio (base64 inside JSON).
HTTP_REPLY = b'{"pad":"' + b"x" * (776 - 10) + b'"}'
WS_REPLY = '{"pad":"' + "x" * (4655 - 10) + '"}'

Scope = dict[str, Any]


async def application(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _http(receive, send)
    elif scope["type"] == "websocket":
        await _websocket(receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _http(receive: Any, send: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": HTTP_REPLY})


async def _websocket(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": WS_REPLY})
        else:
            return


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return
