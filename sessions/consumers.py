"""The session WebSocket (`/ws/session`): an adapter. It checks the Origin and the key in `connect`, parses
each frame, dispatches on `type` to one small method that calls the session (sessions/session.py) or the
session services, and turns refusals into `error` frames in one place.

It never closes a session socket on a client's fault: the web client reconnects after any close and loses
its session's results. Only a refused handshake (403), an over-limit session (4429) and an unavailable
Redis at the handshake (4503) close it.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from access.auth import AuthRefused, key_for
from access.models import Scope
from core import metrics
from core.redis import UNAVAILABLE
from sessions import services
from sessions.limits import origin_allowed
from sessions.schemas import (
    AudioChunk,
    ClientHeartbeat,
    InvalidMessage,
    RoomMessage,
    SessionClose,
    SessionInit,
    TtsPlayEnded,
    TtsStarted,
    Utterance,
    parse_session_message,
)
from sessions.services import SessionRefused
from sessions.session import LiveSession

log = logging.getLogger(__name__)

CLOSE_TOO_MANY_SESSIONS = 4429
CLOSE_TRY_AGAIN_LATER = 4503


class SessionConsumer(AsyncWebsocketConsumer):
    session: LiveSession | None = None
    api_key_id: str = ""
    origin: str = ""
    refused_rooms: bool = False

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1") or None
        if not origin_allowed(origin, settings.SESSIONS_ALLOWED_ORIGINS):
            return await self._refuse_handshake("origin", "origin not allowed", origin=origin[:200] if origin else "")
        self.origin = origin or ""
        presented = self._presented_key(headers, self.scope.get("query_string", b""))
        if presented or not settings.SESSIONS_OPEN_ACCESS:
            try:
                key = await key_for(presented or "", Scope.SESSIONS, self._address())
            except AuthRefused as exc:
                return await self._refuse_handshake(exc.reason, str(exc.message), key_id=exc.key_id)
            except Exception as exc:
                # Not the client's fault: accept and close "try again later" (it reconnects with backoff).
                metrics.SESSION_HANDSHAKES_REJECTED.labels(reason="unavailable").inc()
                log.warning("session handshake deferred: the key could not be checked",
                            extra={"event": "session_auth_error", "reason": f"{type(exc).__name__}"})  # fmt: skip
                await self.accept()
                await self.close(code=CLOSE_TRY_AGAIN_LATER)
                return
            self.api_key_id = key.id
        await self.accept()

    async def _refuse_handshake(self, reason: str, message: str, *, key_id: str = "", origin: str = "") -> None:
        metrics.SESSION_HANDSHAKES_REJECTED.labels(reason=reason).inc()
        log.warning("session handshake refused: %s", message,
                    extra={"event": "session_unauthorized", "reason": reason, "token_id": key_id, "origin": origin})  # fmt: skip
        await self.close()  # before accept(): the server answers the upgrade with HTTP 403

    def _address(self) -> str:
        """The peer's address, for the failed-key throttle shared with the REST API (access/throttle.py)."""
        return str((self.scope.get("client") or ("",))[0] or "")

    @staticmethod
    def _presented_key(headers: dict[bytes, bytes], query_string: bytes) -> str | None:
        """`Authorization: Bearer <key>`, else `?token=<key>` (the web client can only set its URL)."""
        scheme, _, credential = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
        values = parse_qs(query_string.decode("latin-1")).get("token")
        return values[0] if values else None

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message `aclose_old_connections()` (a hop to the process's one
        sync thread for every audio chunk); this consumer reaches the database only through
        `database_sync_to_async`, which handles stale connections itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            await self.session.abandon(f"socket_closed_{code}")
            self.session = None

    # --- inbound -----------------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return  # binary frames are not part of the protocol; the old server ignored them too
        try:
            if len(text_data) > settings.SESSIONS_MAX_MESSAGE_BYTES:
                raise SessionRefused(
                    "MESSAGE_TOO_LARGE", f"a message may hold at most {settings.SESSIONS_MAX_MESSAGE_BYTES} bytes",
                    {"limit": settings.SESSIONS_MAX_MESSAGE_BYTES},
                )  # fmt: skip
            try:
                data = json.loads(text_data)
            except ValueError:
                raise SessionRefused("INVALID_MESSAGE", "frame is not valid JSON") from None
            try:
                message = parse_session_message(data)
            except InvalidMessage as exc:
                raise SessionRefused("INVALID_MESSAGE", exc.message, exc.details) from None
            metrics.SESSION_MESSAGES.labels(type=message.type).inc()
            await getattr(self, f"on_{message.type}")(message)
        except RoomMessage as exc:
            await self._refuse_room(exc.kind)
        except SessionRefused as exc:
            await self._refuse(exc)
        except UNAVAILABLE:
            await self._refuse(SessionRefused("DEPENDENCY_DOWN", "the scheduler's state store is unavailable; retry later"))
        except Exception:
            # A bug must cost one message, not the client's session.
            log.exception("session message handling failed", extra={"event": "internal_error", "session_id": self._session_id()})
            await self._refuse(SessionRefused("INTERNAL_ERROR", "the scheduler failed to process this message"))

    async def _refuse(self, exc: SessionRefused) -> None:
        metrics.SESSION_REFUSALS.labels(code=exc.code).inc()
        log.info("session message refused", extra={"event": "session_refused", "code": exc.code, "reason": exc.message[:200],
                                                   "session_id": self._session_id()})  # fmt: skip
        frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
        if exc.details:
            frame["details"] = exc.details
        await self.send_frame(frame)

    async def _refuse_room(self, kind: str) -> None:
        metrics.SESSION_REFUSALS.labels(code="UNSUPPORTED_FEATURE").inc()
        if self.refused_rooms:
            return  # one refusal per socket: a WebRTC client sends ICE candidates by the dozen
        self.refused_rooms = True
        await self._refuse(SessionRefused(
            "UNSUPPORTED_FEATURE", "rooms and WebRTC are not served by this scheduler; use a one-to-one session",
            {"type": kind},
        ))  # fmt: skip

    def _session_id(self) -> str:
        return self.session.ctx.session_id if self.session is not None else ""

    def _require_session(self, session_id: str) -> LiveSession:
        if self.session is None or self.session.closed:
            raise SessionRefused("INVALID_SESSION", "no open session on this connection: send session_init first",
                                 {"session_id": session_id[:32]})  # fmt: skip
        if session_id != self.session.ctx.session_id:
            raise SessionRefused("INVALID_SESSION", "this connection's session has another id",
                                 {"session_id": session_id[:32]})  # fmt: skip
        return self.session

    async def on_session_init(self, message: SessionInit) -> None:
        if self.session is not None:
            # A second session_init starts over: the old session is closed, not left behind.
            await self.session.abandon("replaced")
            self.session = None
        try:
            ctx = await services.open_session(message, api_key_id=self.api_key_id, origin=self.origin)
        except SessionRefused as exc:
            if exc.code == "TOO_MANY_SESSIONS":
                await self._refuse(exc)
                await self.close(code=CLOSE_TOO_MANY_SESSIONS)
                return
            raise
        self.session = LiveSession(ctx, self.send_frame)
        await self.send_frame({
            "type": "session_init_ack", "session_id": ctx.session_id, "message": "session created", "trace_id": ctx.trace_id,
            "protocol_version": "1.0", "use_binary_frame": False, "negotiated_codec": "opus",
            "negotiated_audio_format": "opus", "negotiated_sample_rate": 16000, "negotiated_channel_count": 1,
        })  # fmt: skip

    async def on_audio_chunk(self, message: AudioChunk) -> None:
        await self._require_session(message.session_id).audio_chunk(message)

    async def on_utterance(self, message: Utterance) -> None:
        await self._require_session(message.session_id).utterance(message)

    async def on_client_heartbeat(self, message: ClientHeartbeat) -> None:
        await self._require_session(message.session_id).heartbeat(message.timestamp)

    async def on_tts_started(self, message: TtsStarted) -> None:
        self._require_session(message.session_id).tts_playback()

    async def on_tts_play_ended(self, message: TtsPlayEnded) -> None:
        self._require_session(message.session_id).tts_playback()

    async def on_session_close(self, message: SessionClose) -> None:
        self._require_session(message.session_id).begin_close(message.reason)

    # --- outbound ------------------------------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> bool:
        """Send one frame; False when the socket closed meanwhile (results arrive from other tasks)."""
        try:
            await self.send(text_data=json.dumps(frame))
        except (OSError, RuntimeError):
            return False
        return True
