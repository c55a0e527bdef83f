"""Scheduling latency against registry and pool size: the same paced job load with 100 and with 10,000
nodes registered in the job's pool, every node a real simulated node on its own WebSocket (one client
process, one web instance).

Selection samples each eligible pool with SRANDMEMBER, so its cost should not grow with the pool; this
measures whether anything else does. To keep the comparison about selection and not about heartbeat load
(10,000 nodes every 15 s would be 667 heartbeats/s on one instance, which the heartbeat scenario measures
on its own), nodes heartbeat every 60 s here (timeout 180 s) in both runs, and the job rate is the same
in both, well below the instance's peak so queueing does not dominate. Nodes connect at `connect_rate`
per second (one instance registers roughly 75-125/s; see bench/heartbeats.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import jobrun
from bench.stack import Environment

SERVER_ENV = {"NODE_HEARTBEAT_INTERVAL_S": "60", "NODE_HEARTBEAT_TIMEOUT_S": "180", "NODE_WARMUP_TIMEOUT_S": "180"}


@dataclass(frozen=True)
class ScaleScenario:
    small: int = 100
    large: int = 10_000
    rate: float = 40.0
    concurrency: int = 16
    connect_rate: float = 100.0
    warmup_s: float = 3.0
    duration_s: float = 30.0


def run(env: Environment, scenario: ScaleScenario) -> dict[str, Any]:
    runs = {}
    for nodes in (scenario.small, scenario.large):
        job_scenario = jobrun.JobScenario(
            label=f"{nodes} nodes", nodes=nodes, rate=scenario.rate, concurrency=scenario.concurrency,
            warmup_s=scenario.warmup_s, duration_s=scenario.duration_s, heartbeat_interval_s=60.0,
            fleet_stagger_s=1 / scenario.connect_rate,
        )  # fmt: skip
        runs[str(nodes)] = jobrun.run(env, job_scenario, server_env=SERVER_ENV)
    small, large = runs[str(scenario.small)], runs[str(scenario.large)]
    ratio = None
    if small["scheduling_ms"]["p99"] and large["scheduling_ms"]["p99"]:
        ratio = round(large["scheduling_ms"]["p99"] / small["scheduling_ms"]["p99"], 2)
    return {"runs": runs, "p99_ratio_large_to_small": ratio}
