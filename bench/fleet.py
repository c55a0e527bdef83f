"""Simulated nodes in a process of their own, for the benchmark: M nodes of capacity c over real WebSockets,
spread round robin over the web instances, each noting when every `job_assign` reached it.

A separate process so that the nodes and the REST submitters do not share one interpreter (and one GIL):
on a small machine a single client process would become the bottleneck and its event-loop lag would show
up as scheduler latency. The parent drives it with two events and reads the outcome from a pipe.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from bench.measure import summary_ms
from nodes.simulator import Fleet, Message, SimulatedNode, SimulatedNodeConfig


@dataclass(frozen=True)
class FleetConfig:
    ws_urls: list[str]
    token: str
    nodes: int
    capacity: int = 4
    processing_ms: float = 0.0
    heartbeat_interval_s: float = 15.0
    # Spread of the connection burst: node i starts i * stagger_s after the first.
    stagger_s: float = 0.0
    register_timeout_s: float = 120.0
    language_sets: list[list[str]] = field(default_factory=lambda: [["en", "zh"]])


@dataclass(frozen=True)
class FleetOutcome:
    registered: int
    # job id -> wall-clock time (time.time()) its first job_assign reached a node.
    assigned_at: dict[str, float]
    jobs_completed: int
    peak_concurrency: int
    errors: int
    register_s: float
    # DEPENDENCY_DOWN answers (a register the instance could not process in time; it then closes the socket
    # with 4503 and the node reconnects after its backoff, 5 s at first).
    dependency_down: int
    # The fleet's own event-loop lag while the parent measured (ready to stop), in seconds: all of it is added
    # to the scheduling latency of a job_assign that arrived meanwhile.
    loop_lag_s: list[float] = field(default_factory=list)


LAG_SAMPLE_S = 0.02


class TimedNode(SimulatedNode):
    """A simulated node that notes the arrival time of each first-attempt job_assign before handling it."""

    def __init__(self, config: SimulatedNodeConfig, assigned_at: dict[str, float]) -> None:
        super().__init__(config)
        self.assigned_at = assigned_at

    async def on_job_assign(self, message: Message) -> None:
        if message.get("attempt_id") == 1:
            self.assigned_at[message["job_id"]] = time.time()
        await super().on_job_assign(message)


def run(config: FleetConfig, ready: Event, stop: Event, results: Connection) -> None:
    """Process entry point: connect and register every node, set `ready`, answer jobs until `stop`."""
    logging.basicConfig(level=logging.ERROR)
    # Thousands of simulated nodes share this one interpreter: with CPython's default thresholds its full
    # collections stall every node at once, and the heartbeats held meanwhile then reach the server as one
    # burst, which no fleet of real machines does. The same settings as the web process (scheduler/asgi.py).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    results.send(asyncio.run(_run(config, ready, stop)))


async def _run(config: FleetConfig, ready: Event, stop: Event) -> FleetOutcome:
    assigned_at: dict[str, float] = {}
    fleet = _fleet(config, assigned_at)
    started = time.monotonic()
    progress = asyncio.create_task(_progress(fleet, started))
    await fleet.start(stagger_s=config.stagger_s)
    try:
        await fleet.wait_until_registered(timeout=config.register_timeout_s)
        register_s = time.monotonic() - started
        progress.cancel()
        lags: list[float] = []
        sampler = asyncio.create_task(_sample_lag(lags))
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        sampler.cancel()
    finally:
        registered = fleet.registered_count
        await fleet.stop()
    return FleetOutcome(
        registered=registered,
        assigned_at=assigned_at,
        jobs_completed=fleet.jobs_completed,
        peak_concurrency=fleet.peak_concurrency,
        errors=sum(len(node.errors) for node in fleet.nodes),
        register_s=register_s,
        dependency_down=sum(error.get("code") == "DEPENDENCY_DOWN" for node in fleet.nodes for error in node.errors),
        loop_lag_s=lags,
    )


async def _sample_lag(lags: list[float]) -> None:
    """How late a short sleep wakes up, every LAG_SAMPLE_S: the time a frame that arrived meanwhile waited."""
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(LAG_SAMPLE_S)
        lags.append(max(0.0, time.perf_counter() - asked - LAG_SAMPLE_S))


async def _progress(fleet: Fleet, started: float) -> None:
    """A line every 10 s while a large fleet registers, so a long wait is visibly not a hang."""
    while True:
        await asyncio.sleep(10)
        print(
            f"  nodes after {time.monotonic() - started:.0f} s: {fleet.connected_count} connected, "
            f"{fleet.registered_count}/{len(fleet.nodes)} registered",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def _fleet(config: FleetConfig, assigned_at: dict[str, float]) -> Fleet:
    configs = []
    for index in range(config.nodes):
        configs.append(
            SimulatedNodeConfig(
                url=f"{config.ws_urls[index % len(config.ws_urls)]}/ws/node",
                token=config.token,
                name=f"bench-{index + 1}",
                languages=list(config.language_sets[index % len(config.language_sets)]),
                max_concurrent_jobs=config.capacity,
                heartbeat_interval_s=config.heartbeat_interval_s,
                processing_ms=config.processing_ms,
                seed=index,
                open_timeout_s=60.0,
            )
        )

    def factory(node_config: SimulatedNodeConfig) -> SimulatedNode:
        return TimedNode(node_config, assigned_at)

    return Fleet(configs, node_factory=factory)


def describe(outcome: FleetOutcome) -> dict[str, Any]:
    return {
        "registered": outcome.registered,
        "jobs_completed_by_nodes": outcome.jobs_completed,
        "peak_concurrency_per_node": outcome.peak_concurrency,
        "error_frames": outcome.errors,
        "register_s": round(outcome.register_s, 2),
        "dependency_down_answers": outcome.dependency_down,
        "event_loop_lag_ms": summary_ms(outcome.loop_lag_s),
    }
