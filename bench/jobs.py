"""Jobs end to end on one web instance: N simulated nodes (capacity c, processing P ms) over real
WebSockets, K concurrent REST submitters; prints the load generator's report (throughput, latency
percentiles of submit -> terminal as the client saw it) and the server's dispatch-latency histogram.

    .venv/bin/python -m bench.jobs --nodes 10 --capacity 4 --processing-ms 0 --jobs 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import httpx

from bench.stack import scheduler_stack


def dispatch_quantiles(url: str) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    buckets = []
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "scheduler_dispatch_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no dispatches recorded"
    parts = []
    for q in (0.5, 0.95, 0.99):
        bound = next(b for b, count in buckets if count >= q * total)
        parts.append(f"p{int(q * 100)} <= {bound * 1000:g} ms")
    return f"{'   '.join(parts)}   ({total:.0f} first attempts; histogram bucket bounds)"


async def run(args: argparse.Namespace, server_url: str, ws_url: str, token: str, key: str) -> None:
    from jobs.loadgen import LoadConfig, run_load
    from nodes.simulator import Fleet, SimulatedNodeConfig

    logging.getLogger("nodes.simulator").setLevel(logging.WARNING)
    base = SimulatedNodeConfig(
        url=f"{ws_url}/ws/node", token=token, max_concurrent_jobs=args.capacity, heartbeat_interval_s=15,
        processing_ms=args.processing_ms, seed=1,
    )  # fmt: skip
    fleet = Fleet.uniform(args.nodes, base)
    await fleet.start()
    try:
        await fleet.wait_until_registered(timeout=60)
        for node in fleet.nodes:
            await node.send_heartbeat()
        await asyncio.sleep(0.5)
        config = LoadConfig(
            api_key=key, url=server_url, count=args.jobs, concurrency=args.concurrency, src_lang="en", tgt_lang="zh", wait_s=10
        )
        report = await run_load(config)
    finally:
        await fleet.stop()
    print(report.format_text())
    print(f"peak concurrency per node (capacity {args.capacity}): {max(n.peak_concurrency for n in fleet.nodes)}")
    print(f"server dispatch latency (submit -> job_assign written): {dispatch_quantiles(server_url)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--processing-ms", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with scheduler_stack() as stack:
        asyncio.run(run(args, stack.url, stack.ws_url, stack.node_token, stack.api_key))


if __name__ == "__main__":
    main()
