"""What a simulated node is and does: its configuration, the client's constants, and job plans."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Message = dict[str, Any]

CLIENT_VERSION = "2.0.0"
DEFAULT_URL = "ws://127.0.0.1:8000/ws/node"
# Audio rides base64 inside JSON; the scheduler's own limit is 4 MiB, so the client must never be the
# side that rejects a legitimate frame.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

ASR_SERVICE_ID = "faster-whisper-vad"
NMT_SERVICE_ID = "nmt-m2m100"
TTS_SERVICE_ID = "piper-tts"
SERVICE_TYPES = ("asr", "nmt", "tts", "semantic")

# The client reports these counters whenever an ASR service runs (Gate-B); a simulator never reruns.
_IDLE_RERUN_METRICS: dict[str, int] = {
    "totalReruns": 0,
    "successfulReruns": 0,
    "failedReruns": 0,
    "timeoutReruns": 0,
    "qualityImprovements": 0,
}

ReopenHeartbeat = Literal["after_register", "before_register", "off"]
JobOutcome = Literal["success", "failure", "model_not_available", "silent_drop"]

# The only service the simulator ever reports missing, in the real node's MODEL_NOT_AVAILABLE shape.
MNA_SERVICE_VERSION = "1.0"
MNA_REASON = "not_installed"
# A few bytes of TTS audio in the node's "Plan A" framing (uint16 little-endian length, then one Opus
# packet; 0xF8 0xFF 0xFE is an Opus silence frame), so a server that unwraps the framing finds it well formed.
_TTS_PACKET = b"\xf8\xff\xfe"
SIMULATED_TTS_AUDIO = base64.b64encode(struct.pack("<H", len(_TTS_PACKET)) + _TTS_PACKET).decode("ascii")
SIMULATED_QUALITY_SCORE = 0.92
# Share of the processing time each pipeline stage reports in `extra.service_timings`.
_STAGE_SHARES = (("asr", "use_asr", 0.45), ("nmt", "use_nmt", 0.15), ("tts", "use_tts", 0.40))
# Streaming partials are capped so a long job with a short interval cannot flood the socket.
MAX_PARTIALS_PER_JOB = 10


def reconnect_delays(initial_s: float, maximum_s: float) -> Iterator[float]:
    """Delays between reconnect attempts: `initial_s`, doubled each time, capped at `maximum_s`."""
    delay = initial_s
    while True:
        yield min(delay, maximum_s)
        delay = min(delay * 2, maximum_s)


def semantic_service_id(languages: Sequence[str]) -> str:
    return "semantic-repair-" + "-".join(languages)


@dataclass
class SimulatedNodeConfig:
    url: str = DEFAULT_URL
    token: str | None = None
    # The lingua client can only put the token in the query string; "header" exercises the other path.
    auth: Literal["query", "header"] = "query"
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    # Extension: None omits the field, as every real node does.
    max_concurrent_jobs: int | None = None
    # Extension: the real node never sends job_ack; True also announces `supports_job_ack`.
    send_ack: bool = False
    heartbeat_interval_s: float = 15.0
    gpu: bool = True
    # None omits `capability_schema_version` (older clients); any other string is sent as is.
    schema_version: str | None = "2.0"
    services_ready: bool = True
    reconnect: bool = True
    reconnect_initial_s: float = 5.0
    reconnect_max_s: float = 60.0
    # The real client starts its heartbeat timer on open and, when it already has an id, sends one
    # heartbeat right away without waiting for the ack; the order relative to node_register is a race
    # in the real client, so both orders are available to test the server.
    reopen_heartbeat: ReopenHeartbeat = "after_register"
    name: str = "sim"
    platform: str = "linux"
    cpu_cores: int = 16
    memory_gb: int = 64
    gpu_name: str = "NVIDIA GeForce RTX 4090"
    gpu_memory_gb: int = 24
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    open_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    seed: int | None = None
    # --- job answering: the real node's pipeline, simulated --------------------------------------------
    # Mean time from job_assign to job_result; 0 answers at once.
    processing_ms: float = 200.0
    # Latency is drawn uniformly in [processing_ms - jitter, processing_ms + jitter], floored at 0.
    processing_jitter_ms: float = 0.0
    # Exclusive outcome probabilities drawn once per job (what they leave over is success), so their sum
    # must not exceed 1. A failure is a PROCESSING_ERROR result after the latency; a model-not-available
    # answers at once, as the real node fails before starting the pipeline; a silent drop processes and
    # then never answers (the job timeout has to decide, like a real job whose audio stayed buffered).
    failure_rate: float = 0.0
    model_not_available_rate: float = 0.0
    silent_drop_rate: float = 0.0
    # Probability that a successful result is followed by an empty write-off result for an earlier job of
    # this node (the real node's audio merging, `extra.reason: "NO_TEXT_ASSIGNED"`).
    write_off_rate: float = 0.0
    # Send `asr_partial` frames before the result when the job asks for `enable_streaming_asr`.
    stream_partials: bool = True
    # The real node also refuses a second job for the same (session_id, utterance_index). Off by default:
    # a scheduler may legitimately retry an utterance elsewhere and simulated nodes are often shared
    # between unrelated tests that reuse session ids; turn it on to test that invariant.
    reject_duplicate_utterance: bool = False

    def __post_init__(self) -> None:
        for name in ("failure_rate", "model_not_available_rate", "silent_drop_rate", "write_off_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        exclusive = self.failure_rate + self.model_not_available_rate + self.silent_drop_rate
        # A little slack for float sums such as 0.1 + 0.2 + 0.7.
        if exclusive > 1.0 + 1e-9:
            raise ValueError(
                "failure_rate + model_not_available_rate + silent_drop_rate must not exceed 1, "
                f"got {exclusive:g}"
            )
        if self.processing_ms < 0:
            raise ValueError(f"processing_ms must not be negative, got {self.processing_ms}")
        if self.processing_jitter_ms < 0:
            raise ValueError(f"processing_jitter_ms must not be negative, got {self.processing_jitter_ms}")


@dataclass(frozen=True)
class JobPlan:
    """What the simulated pipeline will do with one job, drawn up front so outcomes depend only on the
    seed and the order jobs arrive in, never on timing."""

    outcome: JobOutcome
    latency_s: float
    write_off: bool



def display_url(url: str) -> str:
    """The URL without its query string, which may hold a token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


