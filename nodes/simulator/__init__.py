"""A fleet of simulated lingua nodes that speak the node WebSocket protocol exactly like the real client.

The real node is the lingua Electron app (see `/work/shared/reference/lingua1-scheduler.md` section 1 and
PROTOCOL.md section 1). Every frame built here mirrors what that client puts on the wire, including the
fields it adds outside the Rust schema (`devices` in `capability_by_type`, `gpu_queue_length`, camelCase
metrics) and the fields it leaves out (`gpu_mem_percent` when unknown, `processing_metrics` when empty).
The only additions are the documented extensions `max_concurrent_jobs` and `supports_job_ack`, and only
when configured, so a server that works against this simulator with default settings works against
unmodified lingua nodes.

This module must stay importable without Django settings: load tests and the test-suite run it on its own.

The package: `config` (what a node is and does), `frames` (what it sends), `node` (one connection and its jobs),
`fleet` (many nodes at once). The names below are its public interface.
"""

from nodes.simulator.config import (
    DEFAULT_URL,
    MNA_REASON,
    NMT_SERVICE_ID,
    SIMULATED_QUALITY_SCORE,
    Message,
    SimulatedNodeConfig,
    display_url,
    reconnect_delays,
)
from nodes.simulator.fleet import Fleet
from nodes.simulator.node import SimulatedNode

__all__ = [
    "DEFAULT_URL",
    "Fleet",
    "MNA_REASON",
    "Message",
    "NMT_SERVICE_ID",
    "SIMULATED_QUALITY_SCORE",
    "SimulatedNode",
    "SimulatedNodeConfig",
    "display_url",
    "reconnect_delays",
]
