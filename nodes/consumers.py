"""The node WebSocket: an adapter that authenticates in `connect`, parses each frame, dispatches on its
`type` to one small method that calls a service, and turns domain errors into `error` frames in one place."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from access import throttle
from core import credentials, metrics, safe_json
from core.redis import UNAVAILABLE
from nodes import connections, services, tokens
from nodes.registration import RegistrationRejected, register_node
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
from nodes.services import Connection

log = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
# "Try again later": the scheduler could not check the token or register the node (Redis or the database
# unavailable, or the instance overloaded). The real node learns nothing from an `error` frame and never
# re-sends `node_register` on the same socket, but it reconnects with backoff after any close. An
# application code like the others (4xxx after the HTTP status): the standard 1013 is not one autobahn
# (daphne) will send, it closes with 1011 instead.
CLOSE_TRY_AGAIN_LATER = 4503
CLOSE_BAD_MESSAGES = 4400
# Never registered within NODE_REGISTER_TIMEOUT_S, or silent for NODE_IDLE_TIMEOUT_S after registering.
CLOSE_TIMEOUT = 4408
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
    # A timer per socket (register deadline, then idle check) rather than a task: thousands of sockets hold
    # a TimerHandle each, not a coroutine frame.
    _timer: asyncio.TimerHandle | None = None
    _closing = False

    async def connect(self) -> None:
        presented = self._presented_token()
        address = self._client_address()
        try:
            await throttle.check("node_token", address)
            token = await tokens.authenticate_token(presented)
        except throttle.Throttled:
            metrics.NODE_HANDSHAKES_REJECTED.labels(reason="rate_limited").inc()
            await self.close()  # HTTP 403, without a database read
            return
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
            if presented:
                await throttle.record_failure("node_token", address)
            log.warning(
                "node handshake refused",
                extra={"event": "node_unauthorized", "reason": reason, "token_id": credentials.public_id(presented), "client": address},
            )
            await self.close()  # before accept(): the server answers the upgrade with HTTP 403
            return
        token_id = token.id if token is not None else ""
        cap = settings.NODE_MAX_SOCKETS_PER_TOKEN
        if token_id and cap and connections.sockets_of(token_id) >= cap:
            metrics.NODE_HANDSHAKES_REJECTED.labels(reason="token_socket_cap").inc()
            log.warning(
                "node handshake refused: the token holds its cap of sockets on this instance",
                extra={"event": "node_socket_cap", "token_id": token_id, "reason": f"cap {cap}", "client": address},
            )
            await self.close()
            return
        self.conn = Connection(token=token, transport="ws", channel=self.channel_name)
        self.bad_messages: deque[float] = deque()
        self.heartbeat_allowance = float(settings.NODE_HEARTBEAT_BURST)
        self.heartbeat_checked_at = time.monotonic()
        self.last_frame_at = time.monotonic()
        await self.accept()
        connections.LOCAL[self.channel_name] = self
        connections.count_socket(token_id, +1)
        metrics.NODE_SOCKETS_OPEN.inc()
        if settings.NODE_REGISTER_TIMEOUT_S > 0:
            self._timer = asyncio.get_running_loop().call_later(settings.NODE_REGISTER_TIMEOUT_S, self._register_deadline)

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

    def _client_address(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else ""

    # --- timeouts -------------------------------------------------------------------------------------------

    def _register_deadline(self) -> None:
        self._timer = None
        if self.node_id is None:
            self._time_out("register", "no node_register accepted within NODE_REGISTER_TIMEOUT_S")

    def _arm_idle_check(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        # Re-armed for the time left rather than reset on every frame: a frame then costs one clock read.
        self._timer = None
        silent = time.monotonic() - self.last_frame_at
        if silent >= settings.NODE_IDLE_TIMEOUT_S:
            self._time_out("idle", f"no frame for {silent:.0f} s")
        else:
            self._arm_idle_check(settings.NODE_IDLE_TIMEOUT_S - silent)

    def _time_out(self, reason: str, message: str) -> None:
        metrics.NODE_SOCKETS_TIMED_OUT.labels(reason=reason).inc()
        log.info("closing node socket: timed out", extra={"event": "node_socket_timeout", "reason": message, "node_id": self.node_id or ""})
        connections.spawn(self.close(code=CLOSE_TIMEOUT))

    async def disconnect(self, code: int) -> None:
        if connections.LOCAL.pop(self.channel_name, None) is None:
            return  # refused at the handshake
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        connections.count_socket(self.conn.token_id or "", -1)
        metrics.NODE_SOCKETS_OPEN.dec()
        if self.node_id:
            try:
                await services.node_disconnected(self.node_id, self.conn, f"socket_closed_{code}")
            except UNAVAILABLE:
                # The deadline sweep marks it offline once Redis is back.
                log.warning("could not record disconnect: Redis unavailable", extra={"event": "node_disconnect", "node_id": self.node_id})

    # --- inbound ----------------------------------------------------------------------------------------------

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close once: frames already queued behind a close (a flood, a timeout meeting a refusal) would each
        close again, and a second `websocket.close` is an error the server logs with a traceback."""
        if self._closing:
            return
        self._closing = True
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        self.last_frame_at = time.monotonic()
        try:
            if text_data is None:
                raise ProtocolError("BAD_MESSAGE", "binary frames are not part of the node protocol")
            if len(text_data) > settings.NODE_MAX_MESSAGE_BYTES:
                metrics.NODE_BAD_MESSAGES.labels(code="TOO_BIG").inc()
                await self.close(code=CLOSE_TOO_BIG)
                return
            try:
                data = safe_json.loads(text_data, settings.PEER_JSON_MAX_DEPTH)
            except safe_json.JsonRejected as exc:
                metrics.PEER_JSON_REJECTED.labels(where="node_socket", reason=exc.reason).inc()
                if exc.reason == "syntax":
                    raise ProtocolError("BAD_MESSAGE", "frame is not valid JSON") from None
                raise ProtocolError("BAD_MESSAGE", f"frame refused: {exc.message}", {"reason": exc.reason}) from None
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
            # Counted: the real node sends at most one frame before its register is answered (a heartbeat
            # with its old id right after reconnecting), far below the limit; a socket that never registers
            # and keeps talking is closed by it instead of getting an answer and a log line per frame.
            raise ProtocolError("BAD_MESSAGE", "register first", {"reason": "not_registered"})
        if node_id != self.node_id:
            raise ProtocolError("UNAUTHORIZED", "this connection is registered as another node", {"node_id": node_id})

    async def on_node_register(self, message: NodeRegister) -> None:
        if self.node_id is not None and message.node_id not in (None, self.node_id):
            raise ProtocolError("BAD_MESSAGE", "this connection is already registered as another node", {"node_id": self.node_id})
        if self.node_id is not None and message.node_id is None:
            message = message.model_copy(update={"node_id": self.node_id})
        registration = await register_node(message, self.conn)
        if self.node_id is None and settings.NODE_IDLE_TIMEOUT_S > 0:
            self._arm_idle_check(settings.NODE_IDLE_TIMEOUT_S)
        elif self.node_id is None and self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
        if not self._heartbeat_allowed():
            metrics.NODE_MESSAGES_THROTTLED.labels(type=message.type).inc()
            raise ProtocolError(
                "RATE_LIMITED",
                f"heartbeats may come at most every {settings.NODE_HEARTBEAT_MIN_INTERVAL_S:g} s; this one was dropped",
            )
        started = time.perf_counter()
        outcome = await services.record_heartbeat(message, self.conn)
        if outcome.result == "unknown" and self.register_message is not None:
            # Redis lost the node (restart, flush) or swept it offline while this socket lived: re-register
            # from what the node told us, so it comes back without reconnecting.
            await register_node(self.register_message, self.conn)
            outcome = await services.record_heartbeat(message, self.conn)
        metrics.NODE_HEARTBEAT_SECONDS.observe(time.perf_counter() - started)
        if outcome.result == "stale":
            await self.close(code=services.CLOSE_SUPERSEDED)
        elif outcome.result == "revoked":
            await self.close(code=services.CLOSE_TOKEN_REVOKED)

    def _heartbeat_allowed(self) -> bool:
        """A token bucket: NODE_HEARTBEAT_BURST heartbeats at once, then one per NODE_HEARTBEAT_MIN_INTERVAL_S.
        Each heartbeat is a Redis script and maybe a status change; a node sending a thousand a second would
        otherwise get all of them processed."""
        interval = settings.NODE_HEARTBEAT_MIN_INTERVAL_S
        if interval <= 0:
            return True
        now = time.monotonic()
        self.heartbeat_allowance = min(
            float(settings.NODE_HEARTBEAT_BURST), self.heartbeat_allowance + (now - self.heartbeat_checked_at) / interval
        )
        self.heartbeat_checked_at = now
        if self.heartbeat_allowance < 1:
            return False
        self.heartbeat_allowance -= 1
        return True

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
