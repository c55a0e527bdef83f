"""`python -m bench` (`make bench`): the scheduler against its baselines, on one machine, from fresh processes.

Default run (about 4.5 minutes; `--skip` leaves scenarios out):
  1. jobs through the scheduler at peak (closed loop, K submitters, M nodes x capacity c), under daphne
     and under uvicorn serving the same `scheduler.asgi:application`; then the faster one again with wrk
     as the load generator (the same REST calls from a client that costs far less CPU than Python's);
  2. the faster one again at half of its peak rate (paced), for the scheduling latency target;
  3. the Celery baseline: a no-op task round trip, same K, worker concurrency M x c;
  4. the raw limit: a do-nothing ASGI app under daphne and uvicorn carrying our messages of one job;
  5. heartbeats: 5,000 nodes every 15 s on one instance (registering them takes ~2 minutes).
Optional: --scale (100 vs 10,000 nodes, ~6 minutes), --profile (py-spy on the server under peak load),
--scaling 1 2 4 (peak with that many web processes each).

Prints a report and writes every number as JSON to var/bench/<timestamp>.json (the path is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from bench.stack import raise_open_files_limit

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"
SERVERS = ("daphne", "uvicorn")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10, help="simulated nodes (M)")
    parser.add_argument("--capacity", type=int, default=4, help="concurrent jobs per node (c)")
    parser.add_argument("--processing-ms", type=float, default=0.0, help="simulated processing time per job")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent REST submitters (K)")
    parser.add_argument("--instances", type=int, default=1, help="web server processes")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each window")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (T)")
    parser.add_argument("--celery-pool", choices=("threads", "prefork"), default="threads")
    parser.add_argument("--loadgen", choices=("python", "wrk", "both"), default="both",
                        help="REST load: the Python submitters, wrk (bench/wrk.py), or both (wrk on the fastest server)")
    parser.add_argument("--scaling", type=int, nargs="*", default=[],
                        help="also: peak of the fastest server with each of these web process counts (wrk when available)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("half-peak", "celery", "raw", "heartbeats"),
                        help="scenarios to leave out")  # fmt: skip
    parser.add_argument("--heartbeat-nodes", type=int, default=5000)
    parser.add_argument("--scale", action="store_true", help="also: scheduling latency at 100 vs 10,000 nodes")
    parser.add_argument("--scale-nodes", type=int, default=10_000)
    parser.add_argument("--scale-rate", type=float, default=40.0, help="jobs/s of both scale runs")
    parser.add_argument("--profile", action="store_true", help="also: a py-spy profile of the server under peak load")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default var/bench/<timestamp>.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    raise_open_files_limit()
    from bench import report
    from bench.stack import bench_environment

    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or OUTPUT_DIR / f"{stamp}.json"
    results: dict[str, Any] = {"machine": report.machine(), "args": {k: str(v) for k, v in vars(args).items()},
                               "load_before": report.load_average()}  # fmt: skip
    started = time.monotonic()
    with bench_environment() as env:
        run_scenarios(env, args, results, output.with_suffix(".pyspy.txt"))
    results["load_after"] = report.load_average()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["verdict"] = report.verdict(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(report.render(results))
    print(f"\nall numbers: {output}  ({results['elapsed_s']} s)")


def run_scenarios(env: Any, args: argparse.Namespace, results: dict[str, Any], profile_path: Path) -> None:
    from bench import celery_baseline, heartbeats, jobrun, raw, scale, wrk

    def job_scenario(label: str, server: str, rate: float | None = None) -> jobrun.JobScenario:
        return jobrun.JobScenario(
            label=label, server=server, instances=args.instances, nodes=args.nodes, capacity=args.capacity,  # type: ignore[arg-type]
            processing_ms=args.processing_ms, concurrency=args.concurrency, rate=rate, warmup_s=args.warmup,
            duration_s=args.duration,
        )  # fmt: skip

    def loaded(label: str, server: str, loadgen: str, instances: int | None = None) -> jobrun.JobScenario:
        scenario = job_scenario(label, server)
        return dataclasses.replace(scenario, loadgen=loadgen, instances=instances or scenario.instances)

    results["scheduler"] = {}
    python_runs = args.loadgen in ("python", "both")
    for server in args.servers:
        _step(f"scheduler at peak under {server} ({'Python submitters' if python_runs else 'wrk'})")
        results["scheduler"][server] = jobrun.run(env, loaded("peak", server, "python" if python_runs else "wrk"))
    best = max(args.servers, key=lambda server: results["scheduler"][server]["throughput_jobs_per_s"])
    lean = "wrk" if args.loadgen != "python" and wrk.binary() else "python"
    if args.loadgen == "both":
        if lean == "wrk":
            _step(f"scheduler at peak under {best}, wrk as the load generator")
            results["scheduler_wrk"] = {best: jobrun.run(env, loaded("peak (wrk)", best, "wrk"))}
        else:
            _step("wrk is not installed (apt-get install wrk): no run with the lean load generator")
    if args.scaling:
        results["scaling"] = {}
        for count in args.scaling:
            _step(f"scaling: {count} web process(es) under {best} at peak ({lean})")
            results["scaling"][str(count)] = jobrun.run(env, loaded(f"peak, {count} processes", best, lean, count))
    if "half-peak" not in args.skip:
        rate = results["scheduler"][best]["throughput_jobs_per_s"] / 2
        _step(f"scheduler at half of peak ({rate:.0f} jobs/s) under {best}")
        results["half_peak"] = jobrun.run(env, job_scenario("half peak", best, rate))
    if "celery" not in args.skip:
        _step(f"Celery baseline ({args.celery_pool} pool, concurrency {args.nodes * args.capacity})")
        results["celery"] = celery_baseline.run(env, celery_baseline.CeleryScenario(
            concurrency=args.concurrency, worker_concurrency=args.nodes * args.capacity, pool=args.celery_pool,
            warmup_s=args.warmup, duration_s=args.duration,
        ))  # fmt: skip
    if "raw" not in args.skip:
        results["raw"] = {}
        for server in args.servers:
            _step(f"raw limit under {server}")
            results["raw"][server] = raw.run(raw.RawScenario(
                server=server, concurrency=args.concurrency, sockets=args.nodes, warmup_s=args.warmup, duration_s=args.duration,
            ))  # fmt: skip
    if "heartbeats" not in args.skip:
        _step(f"heartbeats: {args.heartbeat_nodes} nodes every 15 s (registering takes a while)")
        results["heartbeats"] = heartbeats.run(env, heartbeats.HeartbeatScenario(nodes=args.heartbeat_nodes))
    if args.scale:
        _step(f"scale: 100 vs {args.scale_nodes} nodes at {args.scale_rate:g} jobs/s (registering takes a while)")
        results["scale"] = scale.run(env, scale.ScaleScenario(large=args.scale_nodes, rate=args.scale_rate,
                                                              concurrency=args.concurrency))  # fmt: skip
    if args.profile:
        _step(f"profile: py-spy on the {best} server at peak")
        results["profile"] = {"scheduler": jobrun.run(env, job_scenario("profiled peak", best), profile=profile_path)}


def _step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    main()
