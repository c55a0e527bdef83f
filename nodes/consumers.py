"""The node WebSocket: an adapter that authenticates in `connect`, parses each frame, dispatches on its
`type` to one small method that calls a service, and turns domain errors into `error` frames in one place."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from core import metrics
from core.redis import UNAVAILABLE
from nodes import connections, services
from nodes.schemas import (
    AsrPartial,
    BadMessage,
    JobAck,
    JobResult,
    JobStarted,
    NodeError,
    NodeHeartbeat,
    NodeRegister,
    parse_node_message,
)
from nodes.services import Connection, RegistrationRejected

log = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
# "Try again later": the scheduler could not check the token or register the node (Redis or the database
# unavailable, or the instance overloaded). The real node learns nothing from an `error` frame and never
# re-sends `node_register` on the same socket, but it reconnects with backoff after any close. An
# application code like the others (4xxx after the HTTP status): the standard 1013 is not one autobahn
# (daphne) will send, it closes with 1011 instead.
CLOSE_TRY_AGAIN_LATER = 4503
CLOSE_BAD_MESSAGES = 4400
# Registration refused (INVALID_CAPABILITY_SCHEMA, NO_GPU_AVAILABLE, NODE_ID_CONFLICT, a bad node id). The
# real node ignores the `error` frame and never registers again on that socket; closing lets its reconnect
# backoff apply instead of leaving it connected and useless. The close reason repeats the code (uvicorn; daphne
# sends none).
CLOSE_REGISTRATION_REFUSED = 4422


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, *, counts: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        # Whether it counts toward the bad-message limit that closes the socket.
        self.counts = counts


class NodeConsumer(AsyncWebsocketConsumer):
    conn: Connection
    node_id: str | None = None
    register_message: NodeRegister | None = None

    async def connect(self) -> None:
        presented = self._presented_token()
        try:
            token = await services.authenticate_token(presented)
        except Exception as exc:
            # Not the node's fault: a bad-token refusal would be wrong. Accept and close "try again later".
            metrics.NODE_HANDSHAKES_REJECTED.labels(reason="unavailable").inc()
            log.warning(
                "node handshake deferred: the token could not be checked",
                extra={"event": "node_auth_error", "reason": f"{type(exc).__name__}: {exc}"[:200]},
            )
            await self.accept()
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        if token is None and (settings.NODE_AUTH_REQUIRED or presented):
            reason = "missing" if not presented else "invalid"
            metrics.NODE_HANDSHAKES_REJECTED.labels(reason=reason).inc()
            log.warning(
                "node handshake refused",
                extra={"event": "node_unauthorized", "reason": reason, "token_id": (presented or "").partition(".")[0][:32]},
            )
            await self.close()  # before accept(): the server answers the upgrade with HTTP 403
            return
        self.conn = Connection(token=token, transport="ws", channel=self.channel_name)
        self.bad_messages: deque[float] = deque()
        await self.accept()
        connections.LOCAL[self.channel_name] = self
        metrics.NODE_SOCKETS_OPEN.inc()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message `aclose_old_connections()`: that is a hop to the
        process's one sync thread for every frame a node sends (heartbeats, results), queued behind every
        other hop of the process. This consumer reaches the database only through `database_sync_to_async`,
        which closes stale connections in that thread itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def _presented_token(self) -> str | None:
        for name, value in self.scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credential:
                    return credential.strip()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        values = query.get("token")
        return values[0] if values else None

    async def disconnect(self, code: int) -> None:
        if connections.LOCAL.pop(self.channel_name, None) is None:
            return  # refused at the handshake
        metrics.NODE_SOCKETS_OPEN.dec()
        if self.node_id:
            try:
                await services.node_disconnected(self.node_id, self.conn, f"socket_closed_{code}")
            except UNAVAILABLE:
                # The deadline sweep marks it offline once Redis is back.
                log.warning("could not record disconnect: Redis unavailable", extra={"event": "node_disconnect", "node_id": self.node_id})

    # --- inbound ----------------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if text_data is None:
                raise ProtocolError("BAD_MESSAGE", "binary frames are not part of the node protocol")
            if len(text_data) > settings.NODE_MAX_MESSAGE_BYTES:
                metrics.NODE_BAD_MESSAGES.labels(code="TOO_BIG").inc()
                await self.close(code=CLOSE_TOO_BIG)
                return
            try:
                data = json.loads(text_data)
            except ValueError:
                raise ProtocolError("BAD_MESSAGE", "frame is not valid JSON") from None
            try:
                message = parse_node_message(data)
            except BadMessage as exc:
                raise ProtocolError("BAD_MESSAGE", exc.message, exc.details) from None
            metrics.NODE_MESSAGES.labels(type=message.type).inc()
            await getattr(self, f"on_{message.type}")(message)
        except ProtocolError as exc:
            await self._refuse(exc)
        except RegistrationRejected as exc:
            await self.send_frame({"type": "error", "code": exc.code, "message": exc.message, "details": exc.details})
            if self.node_id is None:
                # A registered socket keeps its registration (the real node stops reconnecting after a
                # second server-side close): only a socket that never registered is closed.
                await self.close(code=CLOSE_REGISTRATION_REFUSED, reason=exc.code)
        except UNAVAILABLE as exc:
            metrics.NODE_BAD_MESSAGES.labels(code="DEPENDENCY_DOWN").inc()
            log.warning(
                "node message not processed: Redis unavailable",
                extra={"event": "redis_down", "node_id": self.node_id or "", "reason": f"{type(exc).__name__}: {exc}"[:200]},
            )
            await self.send_frame(
                {"type": "error", "code": "DEPENDENCY_DOWN", "message": "the scheduler's state store is unavailable; retry later"}
            )
            if self.node_id is None:
                # A node whose register failed would otherwise stay connected and unregistered for good.
                await self.close(code=CLOSE_TRY_AGAIN_LATER)
        except Exception:
            # A bug must cost one message, not the node's connection.
            metrics.NODE_BAD_MESSAGES.labels(code="INTERNAL_ERROR").inc()
            log.exception("node message handling failed", extra={"event": "internal_error", "node_id": self.node_id or ""})
            await self.send_frame({"type": "error", "code": "INTERNAL_ERROR", "message": "the scheduler failed to process this message"})

    async def _refuse(self, exc: ProtocolError) -> None:
        metrics.NODE_BAD_MESSAGES.labels(code=exc.code).inc()
        log.info("node message refused", extra={"event": "bad_message", "code": exc.code, "reason": exc.message, "node_id": self.node_id or ""})
        frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
        if exc.details:
            frame["details"] = exc.details
        await self.send_frame(frame)
        if exc.counts and self._too_many_bad_messages():
            log.warning("closing node socket: too many bad messages", extra={"event": "bad_message_limit", "node_id": self.node_id or ""})
            await self.close(code=CLOSE_BAD_MESSAGES)

    def _too_many_bad_messages(self) -> bool:
        now = time.monotonic()
        self.bad_messages.append(now)
        while self.bad_messages and self.bad_messages[0] < now - settings.NODE_BAD_MESSAGE_WINDOW_S:
            self.bad_messages.popleft()
        return len(self.bad_messages) > settings.NODE_BAD_MESSAGE_LIMIT

    def _require_node(self, node_id: str) -> None:
        if self.node_id is None:
            # The real node sends a heartbeat with its old id right after reconnecting, before its
            # register is answered: expected, so it does not count toward the bad-message limit.
            raise ProtocolError("BAD_MESSAGE", "register first", {"reason": "not_registered"}, counts=False)
        if node_id != self.node_id:
            raise ProtocolError("UNAUTHORIZED", "this connection is registered as another node", {"node_id": node_id})

    async def on_node_register(self, message: NodeRegister) -> None:
        if self.node_id is not None and message.node_id not in (None, self.node_id):
            raise ProtocolError("BAD_MESSAGE", "this connection is already registered as another node", {"node_id": self.node_id})
        if self.node_id is not None and message.node_id is None:
            message = message.model_copy(update={"node_id": self.node_id})
        registration = await services.register_node(message, self.conn)
        self.node_id = registration.node_id
        self.register_message = message.model_copy(update={"node_id": registration.node_id})
        await self.send_frame(
            {
                "type": "node_register_ack",
                "node_id": registration.node_id,
                "message": "Node registered successfully",
                "status": registration.status,
            }
        )

    async def on_node_heartbeat(self, message: NodeHeartbeat) -> None:
        self._require_node(message.node_id)
        started = time.perf_counter()
        outcome = await services.record_heartbeat(message, self.conn)
        if outcome.result == "unknown" and self.register_message is not None:
            # Redis lost the node (restart, flush) or swept it offline while this socket lived: re-register
            # from what the node told us, so it comes back without reconnecting.
            await services.register_node(self.register_message, self.conn)
            outcome = await services.record_heartbeat(message, self.conn)
        metrics.NODE_HEARTBEAT_SECONDS.observe(time.perf_counter() - started)
        if outcome.result == "stale":
            await self.close(code=services.CLOSE_SUPERSEDED)
        elif outcome.result == "revoked":
            await self.close(code=services.CLOSE_TOKEN_REVOKED)

    async def on_job_ack(self, message: JobAck) -> None:
        self._require_node(message.node_id)
        await services.job_message(message)

    async def on_job_started(self, message: JobStarted) -> None:
        self._require_node(message.node_id)
        await services.job_message(message)

    async def on_asr_partial(self, message: AsrPartial) -> None:
        self._require_node(message.node_id)
        await services.job_message(message)

    async def on_job_result(self, message: JobResult) -> None:
        self._require_node(message.node_id)
        await services.job_message(message)

    async def on_node_error(self, message: NodeError) -> None:
        self._require_node(message.node_id)
        services.report_node_error(message)

    # --- outbound (from services, in-process or through the channel layer) ---------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> bool:
        """Send one frame; False when the socket has closed meanwhile. Frames reach this socket from other
        coroutines too (a dispatch, a status change, a newer connection of the same node), and uvicorn raises
        `ClientDisconnected` (an OSError) on a send after the node went away, where daphne dropped the frame:
        either way it is lost, and that must not fail whatever was sending it."""
        try:
            await self.send(text_data=json.dumps(frame))
        except (OSError, RuntimeError) as exc:
            log.info(
                "frame not sent: the node's socket is closed",
                extra={"event": "frame_not_sent", "node_id": self.node_id or "", "reason": f"{frame.get('type')}: {type(exc).__name__}"},
            )
            return False
        return True

    async def close_connection(self, code: int, conn_id: str | None) -> None:
        # With a conn id, close only if this socket still is that connection: a reconnect may reuse a channel.
        if conn_id is None or conn_id == self.conn.conn_id:
            await self.close(code=code)

    async def node_frame(self, event: dict[str, Any]) -> None:
        await self.send_frame(event["frame"])

    async def node_close(self, event: dict[str, Any]) -> None:
        await self.close_connection(event["code"], event.get("conn_id"))
