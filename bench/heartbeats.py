"""Heartbeat handling on one web instance: N simulated nodes over real WebSockets, heartbeating every I
seconds for T seconds; prints the server-side handling time distribution (from its own histogram), the
heartbeats handled per second, and the server's RSS.

    .venv/bin/python -m bench.heartbeats --nodes 500 --interval 1 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

import httpx

from bench.stack import scheduler_stack


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Upper bound of the histogram bucket holding quantile q (cumulative counts)."""
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def scrape(url: str) -> tuple[list[tuple[float, float]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    buckets: list[tuple[float, float]] = []
    handled = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "scheduler_node_heartbeat_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            if sample.name == "scheduler_node_heartbeats_total":
                handled += sample.value
    return sorted(buckets), handled


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_fleet(ws_url: str, token: str, nodes: int, interval: float, duration: float) -> int:
    from nodes.simulator import Fleet, SimulatedNodeConfig

    logging.getLogger("nodes.simulator").setLevel(logging.WARNING)
    base = SimulatedNodeConfig(url=f"{ws_url}/ws/node", token=token, heartbeat_interval_s=interval)
    fleet = Fleet.uniform(nodes, base, language_sets=[["en", "zh"], ["de", "en"], ["en", "ja", "zh"]])
    await fleet.start(stagger_s=interval / nodes)
    await fleet.wait_until_registered(timeout=120)
    await asyncio.sleep(duration)
    registered = fleet.registered_count
    await fleet.stop()
    return registered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    env = {"NODE_HEARTBEAT_INTERVAL_S": str(args.interval), "NODE_HEARTBEAT_TIMEOUT_S": str(args.interval * 3)}
    with scheduler_stack(env) as stack:
        print(f"server log: {stack.server_log}", flush=True)
        started = time.monotonic()
        try:
            registered = asyncio.run(run_fleet(stack.ws_url, stack.node_token, args.nodes, args.interval, args.duration))
        except TimeoutError:
            sys.exit("not every node registered within 120 s; see the server log above")
        elapsed = time.monotonic() - started
        buckets, handled = scrape(stack.url)
        rss = rss_mib(stack.server_pid)
    print(f"nodes registered        {registered}/{args.nodes}")
    print(f"heartbeats handled      {handled:.0f} in {elapsed:.1f} s ({handled / elapsed:.0f}/s)")
    print(f"handling p50 <= {quantile(buckets, 0.5) * 1000:.1f} ms   p95 <= {quantile(buckets, 0.95) * 1000:.1f} ms   "
          f"p99 <= {quantile(buckets, 0.99) * 1000:.1f} ms   (histogram bucket bounds)")
    print(f"web server RSS          {rss:.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
