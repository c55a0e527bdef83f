"""Messages of the session protocol (`/ws/session`) as the lingua web client, mobile app and API gateway
send them (docs/sessions.md). Required fields are the old server's required fields; extra fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from nodes.schemas import describe_errors


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Pipeline(Lenient):
    use_asr: bool
    use_nmt: bool
    use_tts: bool
    use_semantic: bool | None = None
    use_tone: bool | None = None


class SessionInit(Lenient):
    type: Literal["session_init"]
    client_version: str = Field(max_length=128)
    platform: str = Field(max_length=64)
    src_lang: str = Field(max_length=16)
    tgt_lang: str = Field(max_length=16)
    dialect: str | None = Field(None, max_length=64)
    features: dict[str, Any] | None = None
    pairing_code: str | None = Field(None, max_length=64)
    tenant_id: str | None = Field(None, max_length=128)
    mode: Literal["one_way", "two_way_auto"] | None = None
    lang_a: str | None = Field(None, max_length=16)
    lang_b: str | None = Field(None, max_length=16)
    auto_langs: list[str] | None = None
    enable_streaming_asr: bool | None = None
    partial_update_interval_ms: int | None = Field(None, ge=0)
    trace_id: str | None = Field(None, max_length=128)


class AudioChunk(Lenient):
    type: Literal["audio_chunk"]
    session_id: str
    seq: int = Field(ge=0)
    is_final: bool
    payload: str | None = None
    client_timestamp_ms: int | None = None


class Utterance(Lenient):
    type: Literal["utterance"]
    session_id: str
    utterance_index: int = Field(ge=0)
    manual_cut: bool
    src_lang: str = Field(max_length=16)
    tgt_lang: str = Field(max_length=16)
    audio: str
    audio_format: str = Field(max_length=16)
    sample_rate: int = Field(ge=8000, le=48000)
    dialect: str | None = Field(None, max_length=64)
    features: dict[str, Any] | None = None
    trace_id: str | None = Field(None, max_length=128)
    pipeline: Pipeline | None = None


class ClientHeartbeat(Lenient):
    type: Literal["client_heartbeat"]
    session_id: str
    timestamp: int


class TtsStarted(Lenient):
    type: Literal["tts_started"]
    session_id: str
    trace_id: str
    group_id: str
    ts_start_ms: int


class TtsPlayEnded(Lenient):
    type: Literal["tts_play_ended"]
    session_id: str
    trace_id: str
    group_id: str
    ts_end_ms: int


class SessionClose(Lenient):
    type: Literal["session_close"]
    session_id: str
    reason: str


SessionMessage = Annotated[
    SessionInit | AudioChunk | Utterance | ClientHeartbeat | TtsStarted | TtsPlayEnded | SessionClose,
    Field(discriminator="type"),
]
MESSAGE_TYPES = frozenset(
    ("session_init", "audio_chunk", "utterance", "client_heartbeat", "tts_started", "tts_play_ended", "session_close")
)
# The old server's room and WebRTC messages: refused, once per socket (docs/sessions.md).
ROOM_TYPES = frozenset(
    ("room_create", "room_join", "room_leave", "room_raw_voice_preference", "webrtc_offer", "webrtc_answer", "webrtc_ice")
)
_adapter: TypeAdapter[Any] = TypeAdapter(SessionMessage)


class InvalidMessage(Exception):
    """A frame that is not a session message; `details` names the offending fields, never their values."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class RoomMessage(Exception):
    """A room or WebRTC message: a known message this scheduler does not serve."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def parse_session_message(data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidMessage("a message must be a JSON object")
    kind = data.get("type")
    if isinstance(kind, str) and kind in ROOM_TYPES:
        raise RoomMessage(kind)
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise InvalidMessage(f"unknown message type {str(kind)[:64]!r}", {"type": kind if isinstance(kind, str) else None})
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {kind}", describe_errors(exc)) from None
