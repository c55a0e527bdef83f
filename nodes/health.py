"""The health check a heartbeat must pass, as a pure function; the state machine that counts results is
the heartbeat script (core/lua/node_heartbeat.lua), so concurrent writers can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CORE_SERVICES = ("asr", "nmt", "tts")


class _Capability(Protocol):
    type: str
    ready: bool


class _Usage(Protocol):
    cpu_percent: float
    gpu_percent: float | None
    mem_percent: float


@dataclass(frozen=True)
class HealthCheck:
    ok: bool
    reason: str = ""
    # Failed only on load: the services are ready. Enough to leave `registering` (see node_heartbeat.lua).
    load_only: bool = False


def pool_name(languages: list[str]) -> str:
    """The language-set pool of a node: its sorted, de-duplicated semantic-repair languages joined by '-'."""
    return "-".join(sorted({lang.strip().lower() for lang in languages if lang.strip()}))


def ready_services(capabilities: list[_Capability]) -> set[str]:
    return {cap.type for cap in capabilities if cap.ready}


def check_heartbeat(
    capabilities: list[_Capability], semantic_languages: list[str], usage: _Usage | None, threshold: float
) -> HealthCheck:
    """Ready needs ASR, NMT and TTS ready, a non-empty semantic language set and load under the threshold.

    An overloaded node fails the check rather than turning degraded at once, so one busy heartbeat does not
    flap it; sustained overload degrades it by the same counting rules as any other failure.
    """
    ready = ready_services(capabilities)
    missing = [service for service in CORE_SERVICES if service not in ready]
    if missing:
        return HealthCheck(False, f"{'_'.join(missing)}_not_ready")
    if not pool_name(semantic_languages):
        return HealthCheck(False, "no_semantic_languages")
    if usage is not None:
        for name, value in (("cpu", usage.cpu_percent), ("gpu", usage.gpu_percent), ("mem", usage.mem_percent)):
            if value is not None and value > threshold:
                return HealthCheck(False, f"{name}_overloaded", load_only=True)
    return HealthCheck(True)
