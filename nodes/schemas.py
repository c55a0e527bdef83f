"""Messages of the node protocol (PROTOCOL.md section 1), parsed leniently.

Unknown fields are ignored and unknown enum values (a new service type, a new device) are kept as plain
strings: the old scheduler dropped whole messages for either, and the node never learned why.

Lenient about shape, strict about size: every string a node sends is bounded (by its database column where
it is stored in one), every list by a count no real node comes near, every number by a range that means
something (no negative memory, no empty GPU, no empty node id). A message outside them is refused as
BAD_MESSAGE naming the field, so what is stored and served back is always what a strict reader accepts.
The limits live here, in the schemas, so the OpenAPI document shows them and a fuzzer can reach them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from core.safe_json import MAX_SAFE_INTEGER

__all__ = ["NodeMessage", "ValidationError", "parse_node_message", "describe_errors"]


# Column lengths of nodes.models.Node and jobs.models.Job, where these values end up.
NodeId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
JobId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Version = Annotated[str, StringConstraints(max_length=64)]
Platform = Annotated[str, StringConstraints(max_length=32)]
# Service types, devices, statuses, error codes: short identifiers.
Word = Annotated[str, StringConstraints(max_length=32)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ServiceId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Language = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Reason = Annotated[str, StringConstraints(max_length=200)]
Trace = Annotated[str, StringConstraints(max_length=128)]
Languages = Annotated[list[Language], Field(max_length=64)]
Percent = Annotated[float, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
# Where an HTTP node takes frames: http(s), a host name or address, an optional port and path. Checked by the
# node link and shown in its OpenAPI schema.
DISPATCH_URL_PATTERN = re.compile(
    r"^https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?(?:/[^\s]*)?$"
)
# Lists a node sends whole: far above any real node (a few dozen services or models), far below a flood.
MAX_ITEMS = 256


class Lenient(BaseModel):
    # NaN and Infinity never reach a model from the wire (core.safe_json); this keeps it so for values
    # built in code too.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Gpu(Lenient):
    name: str = Field(min_length=1, max_length=128, description="a GPU needs a name to count as one")
    # The lingua node sends what nvidia-smi reported; JSON.stringify turns an unreadable value into null.
    memory_gb: float | None = Field(None, ge=0, le=4096)


class Hardware(Lenient):
    cpu_cores: int = Field(ge=1, le=4096)
    memory_gb: float = Field(ge=0, le=65536)
    gpus: list[Gpu] | None = Field(None, max_length=64)


class InstalledService(Lenient):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    service_id: ServiceId
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    device: Word = ""
    status: Word = ""


class CapabilityByType(Lenient):
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    ready: bool
    reason: Reason | None = None


class LanguageCapabilities(Lenient):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    asr_languages: Languages = Field(default_factory=list)
    semantic_languages: Languages = Field(default_factory=list)
    tts_languages: Languages = Field(default_factory=list)


class ResourceUsage(Lenient):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    cpu_percent: Percent
    gpu_percent: Percent | None = None
    gpu_mem_percent: Percent | None = None
    mem_percent: Percent
    running_jobs: int = Field(ge=0, le=100_000)


class NodeRegister(Lenient):
    type: Literal["node_register"]
    version: Version
    platform: Platform
    hardware: Hardware
    installed_models: list[dict[str, Any]] = Field(max_length=MAX_ITEMS)
    capability_by_type: list[CapabilityByType] = Field(max_length=MAX_ITEMS)
    features_supported: dict[str, Any]
    accept_public_jobs: bool
    # null on a first connect. Its format, emptiness included, is checked by registration, which refuses a
    # malformed id as it refuses a taken one (closing a socket that never registered, docs/protocol.md).
    node_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    capability_schema_version: Annotated[str, StringConstraints(max_length=16)] | None = None
    installed_services: list[InstalledService] = Field(default_factory=list, max_length=MAX_ITEMS)
    language_capabilities: LanguageCapabilities | None = None
    advanced_features: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(None, max_length=MAX_ITEMS)
    # Extensions the lingua node never sends.
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=1024)
    supports_job_ack: bool = False
    # HTTP link only.
    dispatch_url: Annotated[str, StringConstraints(max_length=2048)] | None = None


class NodeHeartbeat(Lenient):
    type: Literal["node_heartbeat"]
    node_id: NodeId
    timestamp: Count
    resource_usage: ResourceUsage
    installed_services: list[InstalledService] = Field(max_length=MAX_ITEMS)
    capability_by_type: list[CapabilityByType] = Field(max_length=MAX_ITEMS)
    language_capabilities: LanguageCapabilities | None = None
    installed_models: list[dict[str, Any]] | None = Field(None, max_length=MAX_ITEMS)
    processing_metrics: dict[str, Any] | None = None
    rerun_metrics: dict[str, Any] | None = None


AttemptId = Annotated[int, Field(ge=1, le=1_000_000)]


class JobAck(Lenient):
    type: Literal["job_ack"]
    job_id: JobId
    attempt_id: AttemptId
    node_id: NodeId


class JobStarted(Lenient):
    type: Literal["job_started"]
    job_id: JobId
    attempt_id: AttemptId
    node_id: NodeId


class AsrPartial(Lenient):
    type: Literal["asr_partial"]
    job_id: JobId
    node_id: NodeId
    text: str
    is_final: bool


class ErrorInfo(Lenient):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    code: Code = "PROCESSING_ERROR"
    message: str = ""
    # PROTOCOL's `details?` is any JSON: a node's odd details must not cost the job its error report.
    details: Any = None


class JobResult(Lenient):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    type: Literal["job_result"]
    job_id: JobId
    attempt_id: AttemptId
    node_id: NodeId
    success: bool
    session_id: Trace | None = None
    utterance_index: Count | None = None
    text_asr: str | None = None
    text_translated: str | None = None
    tts_audio: str | None = None
    tts_format: Word | None = None
    extra: dict[str, Any] | None = None
    processing_time_ms: Count | None = None
    error: ErrorInfo | None = None
    trace_id: Trace | None = None
    # The real node's quality fields, kept with the result as sent (any JSON: a mistyped quality field must
    # not cost the job its result).
    asr_quality_level: Any = None
    quality_score: Any = None
    reason_codes: Any = None
    rerun_count: Any = None
    segments_meta: Any = None


class NodeError(Lenient):
    type: Literal["node_error"]
    node_id: NodeId
    code: Code
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
