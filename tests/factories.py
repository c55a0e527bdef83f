"""Node protocol messages as plain dicts, shaped like what the real lingua node puts on the wire
(/work/shared/reference/lingua1-scheduler.md section 1.3 (a) `node_register` and (d) `node_heartbeat`).

Defaults describe a healthy GPU node for en/zh with ASR, NMT, TTS and semantic repair running, so its first
heartbeat makes it `ready`. Overrides replace top-level keys; build nested variations with the helpers.
"""

from __future__ import annotations

import copy
import time
from typing import Any

LANGUAGES = ["en", "zh"]
SERVICE_IDS = {
    "asr": "faster-whisper-vad",
    "nmt": "nmt-m2m100",
    "tts": "piper-tts",
    "semantic": "semantic-repair-en-zh",
}


def installed_services(status: str = "running", device: str = "gpu") -> list[dict[str, Any]]:
    return [
        {"service_id": service_id, "type": kind, "device": device, "status": status}
        for kind, service_id in SERVICE_IDS.items()
    ]


def capability_by_type(ready: bool = True) -> list[dict[str, Any]]:
    # The real client adds a non-schema `devices` list and sends no `reason`.
    return [{"type": kind, "ready": ready, "devices": ["gpu"]} for kind in SERVICE_IDS]


def language_capabilities(languages: list[str] | None = None) -> dict[str, Any]:
    # The client reports one list for all three: the intersection of its running services' languages.
    languages = list(LANGUAGES if languages is None else languages)
    return {
        "asr_languages": languages,
        "semantic_languages": list(languages),
        "tts_languages": list(languages),
        "semantic_core_ready": bool(languages),
    }


def resource_usage(**overrides: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "cpu_percent": 23.5,
        "gpu_percent": 61.0,
        "gpu_mem_percent": 48.2,
        "mem_percent": 55.1,
        "running_jobs": 0,
    }
    usage.update(overrides)
    return usage


def register_message(**overrides: Any) -> dict[str, Any]:
    """A `node_register` of a first connect (node_id null); pass node_id=... for a reconnect."""
    message: dict[str, Any] = {
        "type": "node_register",
        "node_id": None,
        "version": "2.0.0",
        "capability_schema_version": "2.0",
        "platform": "windows",
        "hardware": {"cpu_cores": 16, "memory_gb": 64, "gpus": [{"name": "RTX 4090", "memory_gb": 24}]},
        "installed_models": [],
        "installed_services": installed_services(),
        "capability_by_type": capability_by_type(),
        "features_supported": {},
        "accept_public_jobs": True,
        "language_capabilities": language_capabilities(),
    }
    message.update(copy.deepcopy(overrides))
    return message


def heartbeat_message(node_id: str, **overrides: Any) -> dict[str, Any]:
    """A `node_heartbeat` of an idle, healthy node, stamped now."""
    message: dict[str, Any] = {
        "type": "node_heartbeat",
        "node_id": node_id,
        "timestamp": int(time.time() * 1000),
        "resource_usage": resource_usage(),
        "installed_services": installed_services(),
        "capability_by_type": capability_by_type(),
        "language_capabilities": language_capabilities(),
        "rerun_metrics": {
            "totalReruns": 0,
            "successfulReruns": 0,
            "failedReruns": 0,
            "timeoutReruns": 0,
            "qualityImprovements": 0,
        },
    }
    message.update(copy.deepcopy(overrides))
    return message


def reference_heartbeat(node_id: str, **overrides: Any) -> dict[str, Any]:
    """The study's example heartbeat (section 1.3 (d)): a busy node with a queue and efficiency metrics."""
    message = heartbeat_message(
        node_id,
        resource_usage=resource_usage(running_jobs=1, gpu_queue_length=2),
        processing_metrics={"serviceEfficiencies": {"faster-whisper-vad": 12.4, "nmt-m2m100": 380.0}},
    )
    message.update(copy.deepcopy(overrides))
    return message
