"""A fleet of simulated lingua nodes that speak the node WebSocket protocol exactly like the real client.

The real node is the lingua Electron app (see `/work/shared/reference/lingua1-scheduler.md` section 1 and
PROTOCOL.md section 1). Every frame built here mirrors what that client puts on the wire, including the
fields it adds outside the Rust schema (`devices` in `capability_by_type`, `gpu_queue_length`, camelCase
metrics) and the fields it leaves out (`gpu_mem_percent` when unknown, `processing_metrics` when empty).
The only additions are the documented extensions `max_concurrent_jobs` and `supports_job_ack`, and only
when configured, so a server that works against this simulator with default settings works against
unmodified lingua nodes.

This module must stay importable without Django settings: load tests and the test-suite run it on its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

logger = logging.getLogger(__name__)

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


class SimulatedNode:
    """One simulated lingua node: connects, registers, heartbeats, reconnects, answers jobs like the real
    node (see `on_job_assign` and the job fields of `SimulatedNodeConfig`) and records what it hears.

    Everything received is kept in plain lists so tests can assert on it, next to the job counters
    (`peak_concurrency`, `results_sent`, `jobs_completed`, `duplicates_seen`, `outcomes`); `wait_for`
    wakes up on every change of that state.
    """

    def __init__(self, config: SimulatedNodeConfig) -> None:
        self.config = config
        self.node_id: str | None = None
        self.registered = asyncio.Event()
        self.connected = asyncio.Event()
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self.register_acks: list[Message] = []
        self.errors: list[Message] = []
        self.controls: list[Message] = []
        self.statuses: list[Message] = []
        self.last_status: str | None = None
        self.job_assigns: list[Message] = []
        self.job_cancels: list[Message] = []
        self.close_codes: list[int | None] = []
        self.handshake_statuses: list[int] = []
        # Why the latest connection attempt failed, for a command that must say why it could not connect.
        self.last_connect_error = ""
        self.connect_failures: int = 0
        self.connections: int = 0
        self.draining: bool = False
        # Jobs a processing hook considers in flight; the heartbeat reports their count as running_jobs.
        self.active_jobs: dict[str, Message] = {}
        # Counters for tests and the status line.
        self.peak_concurrency: int = 0  # most jobs in flight at once
        self.results_sent: int = 0  # every job_result frame delivered, write-offs and refusals included
        self.jobs_completed: int = 0  # jobs that got their own result (success or error), refusals excluded
        self.duplicates_seen: int = 0  # job_assigns refused as DUPLICATE_JOB_ID (or _UTTERANCE_INDEX)
        # Per outcome: success, failure, model_not_available, silent_drop, duplicate, cancelled,
        # write_off, undelivered (the socket was gone when the result was ready).
        self.outcomes: Counter[str] = Counter()
        # Like the real node's per-process dedup: kept across reconnects, never cleared.
        self.seen_job_ids: set[str] = set()
        self._seen_utterances: set[tuple[Any, Any]] = set()
        # Jobs taken for processing, oldest first: the write-off candidates.
        self._job_history: dict[str, Message] = {}
        self._unanswered: set[str] = set()
        self._written_off: set[str] = set()
        self._cancel_events: dict[str, asyncio.Event] = {}
        self.gpu_queue_length: int = 0
        self._window_efficiencies: dict[str, list[float]] = {}
        self._rng = random.Random(config.seed)
        # A separate stream for job outcomes, so the number of heartbeats sent so far (which draw from
        # `_rng`) cannot change which job fails.
        self._job_rng = random.Random(None if config.seed is None else f"jobs-{config.seed}")
        self._ws: ClientConnection | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._changed = asyncio.Event()

    # --- public API ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_connected(self) -> bool:
        return self._ws is not None

    @property
    def is_registered(self) -> bool:
        return self.registered.is_set()

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._run_task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping = False
        self._stop_requested.clear()
        self._run_task = asyncio.create_task(self.run(), name=f"simulated-node-{self.name}")

    async def run(self) -> None:
        """Connect, and reconnect after every unintended close, until `stop()`."""
        delays = reconnect_delays(self.config.reconnect_initial_s, self.config.reconnect_max_s)
        while not self._stopping:
            opened = await self._connect_once()
            if self._stopping or not self.config.reconnect:
                break
            if opened:
                delays = reconnect_delays(self.config.reconnect_initial_s, self.config.reconnect_max_s)
            delay = next(delays)
            logger.info("%s: reconnecting in %.1f s", self.name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)

    async def stop(self) -> None:
        """Close intentionally (code 1000) and do not reconnect."""
        self._stopping = True
        self._stop_requested.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        task, self._run_task = self._run_task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.config.close_timeout_s + 1.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for hook_task in list(self._hook_tasks):
            hook_task.cancel()
        if self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)

    async def send(self, message: Message) -> None:
        """Send one JSON frame on the live connection; raises ConnectionError when there is none."""
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"{self.name} is not connected")
        await ws.send(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
        self.sent.append(message)
        self._notify()

    async def send_heartbeat(self) -> None:
        """Send one heartbeat now, if an id is known (the real client never heartbeats without one)."""
        if self.node_id is None or self._ws is None:
            return
        await self.send(self.build_heartbeat())
        self._window_efficiencies.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking on every frame sent or received and every state change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    if predicate():
                        return
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{self.name}: condition not met within {timeout} s") from None

    def sent_of_type(self, message_type: str) -> list[Message]:
        return [message for message in self.sent if message.get("type") == message_type]

    def record_service_efficiency(self, service_id: str, efficiency: float) -> None:
        """Feed the next heartbeat's `processing_metrics` (the client averages them per heartbeat window)."""
        self._window_efficiencies.setdefault(service_id, []).append(efficiency)

    async def on_job_assign(self, message: Message) -> None:
        """Hook for job processing. The job is already in `job_assigns` (and acked if `send_ack`).

        The default answers like a real node, shaped by the config: a job id seen before is refused with
        a DUPLICATE_JOB_ID PROCESSING_ERROR; otherwise the job is in flight (`active_jobs`, counted by
        heartbeats) for its latency, streams `asr_partial`s if asked to, and ends as drawn by `plan_job`.
        Subclasses may replace it entirely.
        """
        job_id = message.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            logger.warning("%s: ignoring a job_assign without a job_id", self.name)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Everything up to the first await runs in arrival order (hooks start FIFO), which keeps dedup
        # and the seeded draws deterministic however the jobs overlap later.
        if job_id in self.seen_job_ids:
            await self._refuse(message, f"DUPLICATE_JOB_ID: job {job_id} was already received by this node")
            return
        self.seen_job_ids.add(job_id)
        if self.config.reject_duplicate_utterance:
            utterance = (message.get("session_id"), message.get("utterance_index"))
            if utterance in self._seen_utterances:
                await self._refuse(
                    message,
                    f"DUPLICATE_UTTERANCE_INDEX: session {utterance[0]} utterance {utterance[1]} "
                    "was already received by this node",
                )
                return
            self._seen_utterances.add(utterance)
        plan = self.plan_job()
        if plan.outcome == "model_not_available":
            self._job_history[job_id] = message
            self.outcomes["model_not_available"] += 1
            if await self._send_result(self.build_model_not_available(message, _elapsed_ms(loop, started))):
                self.jobs_completed += 1
            return

        cancelled = asyncio.Event()
        self._cancel_events[job_id] = cancelled
        self._job_history[job_id] = message
        self.active_jobs[job_id] = message
        self.peak_concurrency = max(self.peak_concurrency, len(self.active_jobs))
        self._notify()
        try:
            finished = await self._process(message, plan, cancelled, started)
        finally:
            # Out of flight before the result goes out, so no heartbeat counts a job already answered.
            self.active_jobs.pop(job_id, None)
            self._cancel_events.pop(job_id, None)
            self._notify()
        if not finished:
            self.outcomes["cancelled"] += 1
            return
        self.outcomes[plan.outcome] += 1
        if plan.outcome == "silent_drop":
            self._unanswered.add(job_id)
            return
        elapsed_ms = _elapsed_ms(loop, started)
        if plan.outcome == "failure":
            result = self.build_error_result(
                message, "PROCESSING_ERROR", "SIMULATED_FAILURE: injected by failure_rate", elapsed_ms
            )
        else:
            result = self.build_success_result(message, elapsed_ms)
        if not await self._send_result(result):
            return
        self.jobs_completed += 1
        if plan.outcome == "success" and plan.write_off:
            target = self._write_off_target(job_id)
            if target is not None:
                self._written_off.add(target["job_id"])
                self._unanswered.discard(target["job_id"])
                if await self._send_result(self.build_write_off(message, target)):
                    self.outcomes["write_off"] += 1

    async def on_job_cancel(self, message: Message) -> None:
        """Hook for cancellation: stops the job in flight (no result follows), as the client's cancelJob."""
        job_id = message.get("job_id")
        if isinstance(job_id, str):
            self.active_jobs.pop(job_id, None)
            event = self._cancel_events.get(job_id)
            if event is not None:
                event.set()

    def plan_job(self) -> JobPlan:
        """Draw one job's fate from the job stream: always three draws, whatever the outcome."""
        config = self.config
        roll, jitter_roll, write_off_roll = (self._job_rng.random() for _ in range(3))
        outcome: JobOutcome = "success"
        threshold = 0.0
        bands: tuple[tuple[JobOutcome, float], ...] = (
            ("silent_drop", config.silent_drop_rate),
            ("model_not_available", config.model_not_available_rate),
            ("failure", config.failure_rate),
        )
        for candidate, rate in bands:
            threshold += rate
            if roll < threshold:
                outcome = candidate
                break
        jitter = config.processing_jitter_ms * (2.0 * jitter_roll - 1.0)
        latency_s = max(0.0, config.processing_ms + jitter) / 1000.0
        return JobPlan(outcome=outcome, latency_s=latency_s, write_off=write_off_roll < config.write_off_rate)

    # --- job processing -----------------------------------------------------------------------------

    async def _process(
        self, message: Message, plan: JobPlan, cancelled: asyncio.Event, started: float
    ) -> bool:
        """Spend the job's latency, streaming partials if asked; False when a job_cancel stopped it."""
        loop = asyncio.get_running_loop()
        deadline = started + plan.latency_s
        if self.config.stream_partials and message.get("enable_streaming_asr") is True:
            words = _asr_text(message).split()
            offsets = _partial_offsets(plan.latency_s, message.get("partial_update_interval_ms"))
            for index, offset in enumerate(offsets):
                if await _wait_cancelled(cancelled, started + offset - loop.time()):
                    return False
                shown = max(1, math.ceil(len(words) * (index + 1) / (len(offsets) + 1)))
                await self._send_quietly(self.build_asr_partial(message, " ".join(words[:shown]), False))
            if await _wait_cancelled(cancelled, deadline - loop.time()):
                return False
            await self._send_quietly(self.build_asr_partial(message, " ".join(words), True))
            return not cancelled.is_set()
        return not await _wait_cancelled(cancelled, deadline - loop.time())

    async def _refuse(self, message: Message, text: str) -> None:
        # The real node throws before touching the pipeline; its result carries the thrown text.
        self.duplicates_seen += 1
        self.outcomes["duplicate"] += 1
        await self._send_result(self.build_error_result(message, "PROCESSING_ERROR", text, 0))

    def _write_off_target(self, current_job_id: str) -> Message | None:
        """An earlier job of this node that is not in flight and not yet written off; jobs that never got
        a result of their own come first, since those are the ones whose audio the real node absorbs."""
        candidates = [
            job
            for job_id, job in reversed(self._job_history.items())
            if job_id != current_job_id and job_id not in self.active_jobs and job_id not in self._written_off
        ]
        for job in candidates:
            if job["job_id"] in self._unanswered:
                return job
        return candidates[0] if candidates else None

    async def _send_quietly(self, message: Message) -> bool:
        # A result that finds the socket gone is lost, as on the real node; the job timeout decides then.
        try:
            await self.send(message)
        except (ConnectionError, ConnectionClosed):
            logger.info(
                "%s: %s for %s lost: not connected", self.name, message["type"], message.get("job_id")
            )
            return False
        return True

    async def _send_result(self, result: Message) -> bool:
        if not await self._send_quietly(result):
            self.outcomes["undelivered"] += 1
            return False
        self.results_sent += 1
        return True

    def build_success_result(self, assign: Message, processing_time_ms: int) -> Message:
        pipeline = assign.get("pipeline") if isinstance(assign.get("pipeline"), dict) else {}
        timings = {
            f"{stage}_ms": round(processing_time_ms * share)
            for stage, flag, share in _STAGE_SHARES
            if pipeline.get(flag, True) is not False
        }
        timings["total_ms"] = processing_time_ms
        result = self._result_head(assign, success=True)
        result.update(
            {
                "text_asr": _asr_text(assign),
                "text_translated": f"[{assign.get('tgt_lang')}] simulated translation of utterance "
                f"{assign.get('utterance_index')}",
                "tts_audio": SIMULATED_TTS_AUDIO if pipeline.get("use_tts", True) is not False else "",
                "tts_format": "opus",
                "extra": {"service_timings": timings},
                "processing_time_ms": processing_time_ms,
                "trace_id": assign.get("trace_id"),
                # The real node's ASR quality report, sent with every successful result.
                "asr_quality_level": "good",
                "reason_codes": [],
                "quality_score": SIMULATED_QUALITY_SCORE,
                "rerun_count": 0,
                "segments_meta": {"count": 1, "max_gap": 0.0, "avg_duration": round(processing_time_ms / 1000, 3)},
            }
        )
        return result

    def build_error_result(
        self, assign: Message, code: str, text: str, processing_time_ms: int, details: Message | None = None
    ) -> Message:
        error: Message = {"code": code, "message": text}
        if details is not None:
            error["details"] = details
        result = self._result_head(assign, success=False)
        result.update(
            {"processing_time_ms": processing_time_ms, "trace_id": assign.get("trace_id"), "error": error}
        )
        return result

    def build_model_not_available(self, assign: Message, processing_time_ms: int) -> Message:
        return self.build_error_result(
            assign,
            "MODEL_NOT_AVAILABLE",
            f"Service {NMT_SERVICE_ID}@{MNA_SERVICE_VERSION} is not available: {MNA_REASON}",
            processing_time_ms,
            {"service_id": NMT_SERVICE_ID, "service_version": MNA_SERVICE_VERSION, "reason": MNA_REASON},
        )

    def build_write_off(self, main: Message, target: Message) -> Message:
        """The real node's empty result for a job whose audio another job absorbed: built from the main
        job's result, so it carries the main job's attempt_id and trace_id, with the absorbed job's id,
        session and utterance index."""
        return {
            "type": "job_result",
            "job_id": target.get("job_id"),
            "attempt_id": main.get("attempt_id"),
            "node_id": self.node_id,
            "session_id": target.get("session_id"),
            "utterance_index": target.get("utterance_index"),
            "success": True,
            "text_asr": "",
            "text_translated": "",
            "tts_audio": "",
            "tts_format": "opus",
            "extra": {"reason": "NO_TEXT_ASSIGNED"},
            "processing_time_ms": 0,
            "trace_id": main.get("trace_id"),
        }

    def build_asr_partial(self, assign: Message, text: str, is_final: bool) -> Message:
        return {
            "type": "asr_partial",
            "node_id": self.node_id,
            "session_id": assign.get("session_id"),
            "utterance_index": assign.get("utterance_index"),
            "job_id": assign.get("job_id"),
            "text": text,
            "is_final": is_final,
            "trace_id": assign.get("trace_id"),
        }

    def _result_head(self, assign: Message, *, success: bool) -> Message:
        # attempt_id is echoed untouched: the real node neither checks nor increments it.
        return {
            "type": "job_result",
            "job_id": assign.get("job_id"),
            "attempt_id": assign.get("attempt_id"),
            "node_id": self.node_id,
            "session_id": assign.get("session_id"),
            "utterance_index": assign.get("utterance_index"),
            "success": success,
        }

    # --- message builders ---------------------------------------------------------------------------

    def installed_services(self) -> list[Message]:
        device = "gpu" if self.config.gpu else "cpu"
        status = "running" if self.config.services_ready else "stopped"
        ids = {
            "asr": ASR_SERVICE_ID,
            "nmt": NMT_SERVICE_ID,
            "tts": TTS_SERVICE_ID,
            "semantic": semantic_service_id(self.config.languages),
        }
        return [
            {"service_id": ids[service_type], "type": service_type, "device": device, "status": status}
            for service_type in SERVICE_TYPES
        ]

    def language_capabilities(self, services: list[Message]) -> Message:
        # The client reports the intersection of the languages of running services, device regardless;
        # every simulated service covers all configured languages.
        running = any(service["status"] == "running" for service in services)
        languages = list(self.config.languages) if running else []
        return {
            "asr_languages": languages,
            "tts_languages": list(languages),
            "semantic_languages": list(languages),
            "semantic_core_ready": bool(languages),
        }

    def build_register(self) -> Message:
        services = self.installed_services()
        hardware: Message = {"cpu_cores": self.config.cpu_cores, "memory_gb": self.config.memory_gb}
        if self.config.gpu:
            hardware["gpus"] = [{"name": self.config.gpu_name, "memory_gb": self.config.gpu_memory_gb}]
        message: Message = {"type": "node_register", "node_id": self.node_id, "version": CLIENT_VERSION}
        if self.config.schema_version is not None:
            message["capability_schema_version"] = self.config.schema_version
        message.update(
            {
                "platform": self.config.platform,
                "hardware": hardware,
                "installed_models": [],
                "installed_services": services,
                "capability_by_type": _capability_by_type(services),
                "features_supported": {},
                "accept_public_jobs": True,
                "language_capabilities": self.language_capabilities(services),
            }
        )
        if self.config.max_concurrent_jobs is not None:
            message["max_concurrent_jobs"] = self.config.max_concurrent_jobs
        if self.config.send_ack:
            message["supports_job_ack"] = True
        return message

    def build_heartbeat(self) -> Message:
        if self.node_id is None:
            raise RuntimeError(f"{self.name} has no node id yet; the real client does not heartbeat then")
        services = self.installed_services()
        message: Message = {
            "type": "node_heartbeat",
            "node_id": self.node_id,
            "timestamp": int(time.time() * 1000),
            "resource_usage": self._resource_usage(),
            "installed_services": services,
            "capability_by_type": _capability_by_type(services),
            "language_capabilities": self.language_capabilities(services),
        }
        asr_running = any(s["type"] == "asr" and s["status"] == "running" for s in services)
        if asr_running:
            message["rerun_metrics"] = dict(_IDLE_RERUN_METRICS)
            efficiencies = {
                service_id: round(sum(values) / len(values), 3)
                for service_id, values in self._window_efficiencies.items()
                if values
            }
            if efficiencies:
                message["processing_metrics"] = {"serviceEfficiencies": efficiencies}
        return message

    def _resource_usage(self) -> Message:
        rng = self._rng
        running = len(self.active_jobs)
        usage: Message = {"cpu_percent": round(rng.uniform(5.0, 35.0) + 10.0 * running, 1)}
        if self.config.gpu:
            usage["gpu_percent"] = round(min(100.0, rng.uniform(2.0, 20.0) + 25.0 * running), 1)
            usage["gpu_mem_percent"] = round(rng.uniform(35.0, 55.0), 1)
        else:
            # The client always sends gpu_percent (0.0 when unknown) and omits gpu_mem_percent.
            usage["gpu_percent"] = 0.0
        usage["mem_percent"] = round(rng.uniform(40.0, 60.0), 1)
        usage["running_jobs"] = running
        if self.gpu_queue_length > 0:
            usage["gpu_queue_length"] = self.gpu_queue_length
        return usage

    # --- connection handling ------------------------------------------------------------------------

    def _connect_url(self) -> str:
        if self.config.token is None or self.config.auth != "query":
            return self.config.url
        separator = "&" if urlsplit(self.config.url).query else "?"
        return f"{self.config.url}{separator}token={quote(self.config.token, safe='.')}"

    def _connect_headers(self) -> dict[str, str]:
        if self.config.token is not None and self.config.auth == "header":
            return {"Authorization": f"Bearer {self.config.token}"}
        return {}

    def _redact(self, text: str) -> str:
        token = self.config.token
        if not token:
            return text
        shown = f"{token.split('.', 1)[0]}.***"
        return text.replace(quote(token, safe="."), shown).replace(token, shown)

    async def _connect_once(self) -> bool:
        """One connection attempt and, if it opens, its whole session. Returns whether it opened."""
        try:
            # No pings, no User-Agent, no proxy, no Origin: the npm `ws` client of the real node sends
            # none of them, and the server must cope with exactly that handshake.
            async with connect(
                self._connect_url(),
                additional_headers=self._connect_headers(),
                user_agent_header=None,
                proxy=None,
                ping_interval=None,
                max_size=self.config.max_frame_bytes,
                open_timeout=self.config.open_timeout_s,
                close_timeout=self.config.close_timeout_s,
            ) as ws:
                await self._session(ws)
                return True
        except InvalidStatus as exc:
            status = exc.response.status_code
            self.handshake_statuses.append(status)
            self.connect_failures += 1
            self.last_connect_error = f"the server refused the connection with HTTP {status}" + (
                " (the token is unknown or revoked)" if status in (401, 403) else ""
            )
            logger.warning("%s: handshake rejected with HTTP %d", self.name, status)
        except InvalidURI as exc:
            # A malformed URL never heals; retrying would only spin.
            self._stopping = True
            self.last_connect_error = f"invalid URL: {self._redact(str(exc))}"
            logger.error("%s: invalid scheduler URL: %s", self.name, self._redact(str(exc)))
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            self.connect_failures += 1
            self.last_connect_error = f"{type(exc).__name__}: {self._redact(str(exc))}"
            logger.warning(
                "%s: connection to %s failed: %s: %s",
                self.name,
                display_url(self.config.url),
                type(exc).__name__,
                self._redact(str(exc)),
            )
        self._notify()
        return False

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        if self._stopping:
            self._ws = None
            return
        self.connections += 1
        self.connected.set()
        self._notify()
        # The id is known only after registering (or from an earlier session): say which, never "as None".
        if self.node_id is None:
            logger.info("%s: connected to %s, registering", self.name, display_url(self.config.url))
        else:
            logger.info("%s: reconnected to %s as %s", self.name, display_url(self.config.url), self.node_id)
        heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.name}")
        try:
            reopening = self.node_id is not None
            if reopening and self.config.reopen_heartbeat == "before_register":
                await self.send_heartbeat()
            await self.send(self.build_register())
            if reopening and self.config.reopen_heartbeat == "after_register":
                await self.send_heartbeat()
            async for raw in ws:
                await self._handle_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat_task
            self._ws = None
            self.connected.clear()
            self.registered.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), self.config.close_timeout_s)
            self.close_codes.append(ws.close_code)
            self._notify()
            logger.info("%s: connection closed with code %s", self.name, ws.close_code)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self.send_heartbeat()
            except (ConnectionClosed, ConnectionError):
                return

    async def _handle_frame(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            logger.warning("%s: ignoring a binary frame of %d bytes", self.name, len(raw))
            return
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            logger.warning("%s: ignoring a frame that is not JSON", self.name)
            return
        if not isinstance(message, dict):
            logger.warning("%s: ignoring a JSON frame that is not an object", self.name)
            return
        self.received.append(message)
        message_type = message.get("type")
        if message_type == "node_register_ack":
            await self._on_register_ack(message)
        elif message_type == "job_assign":
            await self._on_job_assign(message)
        elif message_type == "job_cancel":
            self.job_cancels.append(message)
            self._spawn_hook(self.on_job_cancel(message))
        elif message_type == "error":
            self.errors.append(message)
            logger.warning(
                "%s: scheduler error %s: %s", self.name, message.get("code"), message.get("message")
            )
        elif message_type == "node_status":
            self.statuses.append(message)
            status = message.get("status")
            self.last_status = status if isinstance(status, str) else None
        elif message_type == "node_control":
            self.controls.append(message)
            if message.get("command") == "drain":
                self.draining = True
            elif message.get("command") == "undrain":
                self.draining = False
        else:
            logger.info("%s: ignoring unknown message type %r", self.name, message_type)
        self._notify()

    async def _on_register_ack(self, message: Message) -> None:
        node_id = message.get("node_id")
        if not isinstance(node_id, str):
            logger.warning("%s: node_register_ack without a node_id", self.name)
            return
        self.node_id = node_id
        self.register_acks.append(message)
        self.registered.set()
        self._notify()
        logger.info("%s: registered as %s", self.name, node_id)
        await self.send_heartbeat()

    async def _on_job_assign(self, message: Message) -> None:
        self.job_assigns.append(message)
        if self.config.send_ack and self.node_id is not None:
            ack: Message = {
                "type": "job_ack",
                "job_id": message.get("job_id"),
                "attempt_id": message.get("attempt_id"),
                "node_id": self.node_id,
            }
            for optional in ("session_id", "trace_id"):
                if optional in message:
                    ack[optional] = message[optional]
            await self.send(ack)
        self._spawn_hook(self.on_job_assign(message))

    def _spawn_hook(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Hooks run beside the receive loop so a slow job never delays a job_cancel or the next assign.
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: job hook failed", self.name, exc_info=exc)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _elapsed_ms(loop: asyncio.AbstractEventLoop, started: float) -> int:
    return max(0, round((loop.time() - started) * 1000))


async def _wait_cancelled(cancelled: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s` unless cancelled first; whether the job was cancelled."""
    if cancelled.is_set():
        return True
    if delay_s <= 0:
        # Still yield once, so a job with zero latency lets other frames through like any other.
        await asyncio.sleep(0)
        return cancelled.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancelled.wait(), delay_s)
    return cancelled.is_set()


def _asr_text(assign: Message) -> str:
    return f"[{assign.get('src_lang')}] simulated speech of utterance {assign.get('utterance_index')}"


def _partial_offsets(latency_s: float, interval_ms: Any) -> list[float]:
    """When non-final partials go out, in seconds after the assign: every `partial_update_interval_ms`
    within the latency, or one halfway when the job is shorter than an interval or names none."""
    if isinstance(interval_ms, int | float) and not isinstance(interval_ms, bool) and interval_ms > 0:
        interval_s = interval_ms / 1000.0
        offsets = [interval_s * k for k in range(1, MAX_PARTIALS_PER_JOB + 1) if interval_s * k < latency_s]
        if offsets:
            return offsets
    return [latency_s / 2.0]


def _capability_by_type(services: list[Message]) -> list[Message]:
    # Same aggregation as the client: ready when some running GPU implementation exists, plus the
    # non-schema `devices` list and no `reason`.
    capabilities: dict[str, Message] = {}
    for service in services:
        entry = capabilities.setdefault(
            service["type"], {"type": service["type"], "ready": False, "devices": []}
        )
        if service["status"] == "running" and service["device"] == "gpu":
            entry["ready"] = True
        if service["device"] not in entry["devices"]:
            entry["devices"].append(service["device"])
    return list(capabilities.values())


def display_url(url: str) -> str:
    """The URL without its query string, which may hold a token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Fleet:
    """Several simulated nodes started and stopped together."""

    def __init__(
        self,
        configs: Sequence[SimulatedNodeConfig],
        node_factory: Callable[[SimulatedNodeConfig], SimulatedNode] = SimulatedNode,
    ) -> None:
        self.nodes: list[SimulatedNode] = [node_factory(config) for config in configs]

    @classmethod
    def uniform(
        cls,
        count: int,
        base: SimulatedNodeConfig,
        language_sets: Sequence[Sequence[str]] | None = None,
        node_factory: Callable[[SimulatedNodeConfig], SimulatedNode] = SimulatedNode,
    ) -> Fleet:
        """`count` nodes like `base`; node i gets `language_sets[i % len(language_sets)]` when given."""
        if count < 1:
            raise ValueError("a fleet needs at least one node")
        configs = []
        for index in range(count):
            languages = (
                list(language_sets[index % len(language_sets)]) if language_sets else list(base.languages)
            )
            seed = None if base.seed is None else base.seed + index
            configs.append(replace(base, name=f"{base.name}-{index + 1}", languages=languages, seed=seed))
        return cls(configs, node_factory)

    @property
    def connected_count(self) -> int:
        return sum(node.is_connected for node in self.nodes)

    @property
    def registered_count(self) -> int:
        return sum(node.is_registered for node in self.nodes)

    def status_counts(self) -> Counter[str]:
        """Last `node_status` each node heard, counted (nodes that heard none are left out)."""
        return Counter(node.last_status for node in self.nodes if node.last_status is not None)

    async def start(self, stagger_s: float = 0.0) -> None:
        """Start every node, `stagger_s` apart so a large fleet does not arrive as one burst."""
        for index, node in enumerate(self.nodes):
            if index and stagger_s > 0:
                await asyncio.sleep(stagger_s)
            await node.start()

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))

    async def wait_until_registered(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(node.registered.wait() for node in self.nodes))

    def status_line(self) -> str:
        total = len(self.nodes)
        statuses = self.status_counts()
        status_text = " ".join(f"{status}={count}" for status, count in sorted(statuses.items())) or "-"
        rejected = sum(len(node.handshake_statuses) for node in self.nodes)
        errors = sum(len(node.errors) for node in self.nodes)
        jobs = sum(len(node.job_assigns) for node in self.nodes)
        return (
            f"{time.strftime('%H:%M:%S')} connected {self.connected_count}/{total} "
            f"registered {self.registered_count}/{total} statuses {status_text} "
            f"jobs {jobs} completed {self.jobs_completed} in-flight {self.running_jobs} "
            f"peak-concurrency {self.peak_concurrency} errors {errors} rejected-handshakes {rejected}"
        )

    @property
    def jobs_completed(self) -> int:
        return sum(node.jobs_completed for node in self.nodes)

    @property
    def running_jobs(self) -> int:
        return sum(len(node.active_jobs) for node in self.nodes)

    @property
    def peak_concurrency(self) -> int:
        """The highest per-node peak: what to compare with a node's capacity."""
        return max((node.peak_concurrency for node in self.nodes), default=0)

    def outcome_counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.nodes:
            total.update(node.outcomes)
        return total

    async def run_forever(
        self,
        *,
        status_interval_s: float = 5.0,
        duration_s: float | None = None,
        stop_event: asyncio.Event | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        """Print a status line every `status_interval_s` until `duration_s` passes or `stop_event` is set.

        It does not stop the nodes; the caller decides when to call `stop()`.
        """
        stop_event = stop_event or asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.time() + duration_s
        while not stop_event.is_set():
            wait_s = status_interval_s
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait_s = min(wait_s, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), wait_s)
            out(self.status_line())
