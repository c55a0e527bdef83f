"""Messages of the node protocol (PROTOCOL.md section 1), parsed leniently.

Unknown fields are ignored and unknown enum values (a new service type, a new device) are kept as plain
strings: the old scheduler dropped whole messages for either, and the node never learned why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = ["NodeMessage", "ValidationError", "parse_node_message", "describe_errors"]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Gpu(Lenient):
    name: str = ""
    memory_gb: float = 0


class Hardware(Lenient):
    cpu_cores: int
    memory_gb: float
    gpus: list[Gpu] | None = None


class InstalledService(Lenient):
    model_config = ConfigDict(extra="allow")

    service_id: str
    type: str
    device: str = ""
    status: str = ""


class CapabilityByType(Lenient):
    type: str
    ready: bool
    reason: str | None = None


class LanguageCapabilities(Lenient):
    model_config = ConfigDict(extra="allow")

    asr_languages: list[str] = Field(default_factory=list)
    semantic_languages: list[str] = Field(default_factory=list)
    tts_languages: list[str] = Field(default_factory=list)


class ResourceUsage(Lenient):
    model_config = ConfigDict(extra="allow")

    cpu_percent: float
    gpu_percent: float | None = None
    gpu_mem_percent: float | None = None
    mem_percent: float
    running_jobs: int


class NodeRegister(Lenient):
    type: Literal["node_register"]
    version: str
    platform: str
    hardware: Hardware
    installed_models: list[dict[str, Any]]
    capability_by_type: list[CapabilityByType]
    features_supported: dict[str, Any]
    accept_public_jobs: bool
    node_id: str | None = None
    capability_schema_version: str | None = None
    installed_services: list[InstalledService] = Field(default_factory=list)
    language_capabilities: LanguageCapabilities | None = None
    advanced_features: list[str] | None = None
    # Extensions the lingua node never sends.
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=1024)
    supports_job_ack: bool = False
    # HTTP link only.
    dispatch_url: str | None = None


class NodeHeartbeat(Lenient):
    type: Literal["node_heartbeat"]
    node_id: str
    timestamp: int
    resource_usage: ResourceUsage
    installed_services: list[InstalledService]
    capability_by_type: list[CapabilityByType]
    language_capabilities: LanguageCapabilities | None = None
    installed_models: list[dict[str, Any]] | None = None
    processing_metrics: dict[str, Any] | None = None
    rerun_metrics: dict[str, Any] | None = None


class JobAck(Lenient):
    type: Literal["job_ack"]
    job_id: str
    attempt_id: int
    node_id: str


class JobStarted(Lenient):
    type: Literal["job_started"]
    job_id: str
    attempt_id: int
    node_id: str


class AsrPartial(Lenient):
    type: Literal["asr_partial"]
    job_id: str
    node_id: str
    text: str
    is_final: bool


class ErrorInfo(Lenient):
    model_config = ConfigDict(extra="allow")

    code: str = "PROCESSING_ERROR"
    message: str = ""
    # PROTOCOL's `details?` is any JSON: a node's odd details must not cost the job its error report.
    details: Any = None


class JobResult(Lenient):
    model_config = ConfigDict(extra="allow")

    type: Literal["job_result"]
    job_id: str
    attempt_id: int
    node_id: str
    success: bool
    session_id: str | None = None
    utterance_index: int | None = None
    text_asr: str | None = None
    text_translated: str | None = None
    tts_audio: str | None = None
    tts_format: str | None = None
    extra: dict[str, Any] | None = None
    processing_time_ms: int | None = None
    error: ErrorInfo | None = None
    trace_id: str | None = None
    # The real node's quality fields, kept with the result as sent (any JSON: a mistyped quality field must
    # not cost the job its result).
    asr_quality_level: Any = None
    quality_score: Any = None
    reason_codes: Any = None
    rerun_count: Any = None
    segments_meta: Any = None


class NodeError(Lenient):
    type: Literal["node_error"]
    node_id: str
    code: str
    message: str
    details: Any = None


NodeMessage = Annotated[
    NodeRegister | NodeHeartbeat | JobAck | JobStarted | AsrPartial | JobResult | NodeError,
    Field(discriminator="type"),
]
MESSAGE_TYPES = ("node_register", "node_heartbeat", "job_ack", "job_started", "asr_partial", "job_result", "node_error")
_adapter: TypeAdapter[Any] = TypeAdapter(NodeMessage)


class BadMessage(Exception):
    """A frame we cannot act on; `details` names the offending fields for the error frame."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


def parse_node_message(data: Any) -> Any:
    """Validate one decoded JSON value as a node message, or raise BadMessage saying what is wrong."""
    if not isinstance(data, dict):
        raise BadMessage("a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise BadMessage(f"unknown message type {kind!r}", {"type": kind if isinstance(kind, str) else None})
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        raise BadMessage(f"invalid {kind}", describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> dict[str, Any]:
    """Field paths and problems, without echoing input values (they may hold audio)."""
    fields = []
    for error in exc.errors(include_input=False, include_url=False)[:10]:
        # The first location element is the union tag; drop it so paths read like the message.
        loc = [str(part) for part in error["loc"]][1:]
        fields.append({"field": ".".join(loc), "problem": error["msg"]})
    return {"fields": fields}
