"""The frames a simulated node puts on the wire, built exactly as the real lingua client builds them."""

from __future__ import annotations

import time
from typing import Any

from nodes.simulator.config import (
    _IDLE_RERUN_METRICS,
    _STAGE_SHARES,
    ASR_SERVICE_ID,
    CLIENT_VERSION,
    MAX_PARTIALS_PER_JOB,
    MNA_REASON,
    MNA_SERVICE_VERSION,
    NMT_SERVICE_ID,
    SERVICE_TYPES,
    SIMULATED_QUALITY_SCORE,
    SIMULATED_TTS_AUDIO,
    TTS_SERVICE_ID,
    Message,
    SimulatedNodeConfig,
    semantic_service_id,
)


class NodeFrames:
    """Frame builders of `SimulatedNode`: registration, heartbeats, results, partials. They read the node's
    configuration and live state (`config`, running jobs, queue length), so the wire format lives in one place."""

    config: SimulatedNodeConfig

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


