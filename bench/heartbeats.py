"""Heartbeat handling on one web instance: N simulated nodes over real WebSockets (a process of their own),
heartbeating every I seconds; once all are registered, a window of W seconds measures the server's
heartbeat handling time (its own `scheduler_node_heartbeat_seconds` histogram, scraped before and after
so only the window counts), heartbeats handled per second, the server's CPU share and its RSS.

    .venv/bin/python -m bench.heartbeats --nodes 5000 --interval 15 --window 30
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from bench import fleet
from bench.child import Child
from bench.measure import (
    CpuWindow,
    command_calls,
    command_delta,
    histogram_quantile,
    peak_rss_mib,
    rss_mib,
    usage_rows,
)
from bench.stack import Environment, bench_environment, raise_open_files_limit, reset_redis, web_servers

HISTOGRAM = "scheduler_node_heartbeat_seconds"
COUNTER = "scheduler_node_heartbeats_total"
LANGUAGE_SETS = [["en", "zh"], ["de", "en"], ["en", "ja", "zh"]]


@dataclass(frozen=True)
class HeartbeatScenario:
    nodes: int = 5000
    interval_s: float = 15.0
    window_s: float = 30.0
    # Quiet time after the last registration, so its burst is not in the window.
    settle_s: float = 5.0
    # Node connections opened per second. One instance registers roughly 75-125 nodes/s on this machine
    # while the registered ones heartbeat; offered faster, registrations queue behind its 64 Redis
    # connections past their 2 s wait and nodes get DEPENDENCY_DOWN (see docs/performance.md).
    connect_rate: float = 50.0
    # Further server settings, for experiments (e.g. STATS_SAMPLE_INTERVAL_S=3600 to keep the live page's
    # sampler, which reads every node, out of the window).
    server_env: dict[str, str] = field(default_factory=dict)


LAG = "scheduler_event_loop_lag_seconds"
GC_PAUSES = "scheduler_gc_pause_seconds"
REDIS_SECONDS = "scheduler_redis_operation_seconds"


@dataclass(frozen=True)
class Scrape:
    buckets: dict[float, float]
    handled: float
    # Other histograms' cumulative buckets: the event loop's lag, and GC passes per generation ("gc:2").
    others: dict[str, dict[float, float]] = field(default_factory=dict)


def read_metrics(metrics_dir: str) -> Scrape:
    """The server's heartbeat histogram and counter, read from its multiprocess files: the same numbers
    /metrics serves, without a scrape (which at thousands of nodes keeps the instance busy for seconds)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)
    buckets: dict[float, float] = {}
    others: dict[str, dict[float, float]] = {}
    handled = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == f"{HISTOGRAM}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == COUNTER:
                handled += sample.value
            elif sample.name in (f"{LAG}_bucket", f"{GC_PAUSES}_bucket") or (
                sample.name == f"{REDIS_SECONDS}_bucket" and sample.labels.get("operation") == "node_heartbeat"
            ):
                name = {f"{LAG}_bucket": "lag", f"{REDIS_SECONDS}_bucket": "script"}.get(sample.name) or f"gc:{sample.labels['generation']}"
                series = others.setdefault(name, {})
                bound = float(sample.labels["le"])
                series[bound] = series.get(bound, 0.0) + sample.value
    return Scrape(buckets, handled, others)


def scrape_seconds(url: str) -> float:
    """How long one GET /metrics takes (it reads every node's live state from Redis)."""
    started = time.monotonic()
    httpx.get(f"{url}/metrics", timeout=300).raise_for_status()
    return time.monotonic() - started


def quantiles_ms(before: Scrape, after: Scrape, series: str | None = None) -> dict[str, float | None]:
    """p50/p95/p99 upper bucket bounds (ms) of the heartbeats handled between two scrapes (or of another
    histogram of `Scrape.others`)."""
    first = before.buckets if series is None else before.others.get(series, {})
    last = after.buckets if series is None else after.others.get(series, {})
    delta = sorted((bound, last[bound] - first.get(bound, 0.0)) for bound in last)
    result: dict[str, float | None] = {}
    for q in (0.5, 0.95, 0.99):
        bound = histogram_quantile(delta, q)
        result[f"p{int(q * 100)}_le"] = None if bound is None else bound * 1000
    return result


def run(env: Environment, scenario: HeartbeatScenario) -> dict[str, Any]:
    reset_redis(env)
    server_env = {"NODE_HEARTBEAT_INTERVAL_S": str(scenario.interval_s), "NODE_HEARTBEAT_TIMEOUT_S": str(scenario.interval_s * 3),
                  **scenario.server_env}  # fmt: skip
    with web_servers(env, server_env=server_env) as (server,):
        config = fleet.FleetConfig(
            ws_urls=[server.ws_url], token=env.node_token, nodes=scenario.nodes, heartbeat_interval_s=scenario.interval_s,
            stagger_s=1 / scenario.connect_rate, register_timeout_s=600, language_sets=LANGUAGE_SETS,
        )  # fmt: skip
        nodes = Child("node fleet", fleet.run, config).start(ready_timeout=900)
        try:
            time.sleep(scenario.settle_s)
            metrics_dir = server.extra_env["PROMETHEUS_MULTIPROC_DIR"]
            before = read_metrics(metrics_dir)
            calls_before = command_calls(env.client())
            cpu = CpuWindow({f"web-1 ({server.server})": [server.pid or 0], "redis-server": [env.redis.pid or 0], "bench nodes": [nodes.pid]})
            cpu.start()
            time.sleep(scenario.window_s)
            usage = cpu.stop()
            calls = command_delta(calls_before, command_calls(env.client()))
            rss = rss_mib(server.pid or 0)
            peak = peak_rss_mib(server.pid or 0)
            after = read_metrics(metrics_dir)
            scrape_s = scrape_seconds(server.url)
        finally:
            outcome: fleet.FleetOutcome = nodes.stop()
    handled = after.handled - before.handled
    per_heartbeat = max(handled, 1.0)
    return {
        "scenario": asdict(scenario),
        "registered": outcome.registered,
        "register_s": round(outcome.register_s, 1),
        "dependency_down_answers": outcome.dependency_down,
        "heartbeats_in_window": int(handled),
        "heartbeats_per_s": round(handled / scenario.window_s, 1),
        "handling_ms": quantiles_ms(before, after),
        "event_loop_lag_ms": quantiles_ms(before, after, "lag"),
        # The node_heartbeat script's round trip alone (connection checkout included), out of the handling time.
        "heartbeat_script_ms": quantiles_ms(before, after, "script"),
        "gc_passes_in_window": {name: round(series.get(float("inf"), 0.0) - before.others.get(name, {}).get(float("inf"), 0.0))
                                for name, series in sorted(after.others.items()) if name.startswith("gc:")},
        "gc_pause_ms": {name: quantiles_ms(before, after, name) for name in sorted(after.others) if name.startswith("gc:")},
        "redis_commands_per_heartbeat": round(sum(calls.values()) / per_heartbeat, 2),
        "redis_commands_top_per_heartbeat": {name: round(n / per_heartbeat, 2) for name, n in list(calls.items())[:8]},
        "metrics_scrape_s": round(scrape_s, 2),
        "server_rss_mib": round(rss, 1),
        "server_peak_rss_mib": round(peak, 1),
        "processes": usage_rows(usage, scenario.window_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="a server setting")
    args = parser.parse_args()
    raise_open_files_limit()
    server_env = dict(item.split("=", 1) for item in args.server_env)
    with bench_environment() as env:
        result = run(env, HeartbeatScenario(nodes=args.nodes, interval_s=args.interval, window_s=args.window, server_env=server_env))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
