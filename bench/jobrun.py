"""Jobs through the scheduler, measured over a window: M simulated nodes (own process), K REST submitters
(own process), one or more web instances, one Redis.

After the warm-up the parent takes its snapshots (CPU of every process, Redis command counts), waits the
window, snapshots again and only then stops the clients; each client reports with wall-clock times, so
only work inside the window counts:

- throughput: jobs that ended DONE (as the submitting client saw it) inside the window, per second;
- end to end: the loadgen's submit -> terminal-state-visible latency of those jobs;
- scheduling latency: `created_at` of the job (stamped by Redis `TIME` in `job_create.lua` while the
  server handles the POST, in ms) -> the simulated node's handler starting on its first `job_assign`, for
  jobs created inside the window; same machine, same clock.
"""

from __future__ import annotations

import base64
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import fleet, submit, wrk
from bench.child import Child, split_evenly
from bench.measure import CpuWindow, ProcessUsage, command_calls, command_delta, summary_ms, usage_rows
from bench.profiling import Profiler
from bench.stack import Environment, ServerKind, reset_redis, web_servers
from jobs.loadgen import framed_audio
from supervisor.webserver import DEFAULT_SERVER


@dataclass(frozen=True)
class JobScenario:
    label: str
    server: ServerKind = DEFAULT_SERVER  # type: ignore[assignment]
    instances: int = 1
    nodes: int = 10
    capacity: int = 4
    processing_ms: float = 0.0
    concurrency: int = 16
    # Total job submissions per second (open loop); None: closed loop, as fast as answers come back.
    rate: float | None = None
    warmup_s: float = 3.0
    duration_s: float = 10.0
    heartbeat_interval_s: float = 15.0
    fleet_stagger_s: float = 0.0
    # "python": jobs.loadgen submitters (httpx); "wrk": the lean load generator (bench/wrk.py), same calls.
    loadgen: str = "python"


def run(env: Environment, scenario: JobScenario, server_env: dict[str, str] | None = None,
        profile: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """One scenario on a fresh Redis and fresh servers; `profile` records the first server with py-spy."""
    reset_redis(env)
    with web_servers(env, scenario.server, scenario.instances, server_env) as servers:
        nodes = Fleets(env, scenario, [s.ws_url for s in servers])
        nodes.start(ready_timeout=180 + 2 * scenario.nodes * scenario.fleet_stagger_s)
        try:
            if scenario.loadgen == "wrk":
                window, finished, wrk_counts = _run_wrk(env, scenario, servers, nodes, profile)
            else:
                window, finished = _run_python(env, scenario, servers, nodes, profile)
                wrk_counts = None
        finally:
            outcome: fleet.FleetOutcome = nodes.stop()
    return _report(env, scenario, window, finished, outcome, wrk_counts)


# Simulated nodes per fleet process at most: one process holding 10,000 sockets spends tens of ms in its
# own event loop and collector now and then, and a job_assign that waits there is timed as scheduling
# latency; real nodes are separate machines. The processes share the nodes, and their connection rate.
NODES_PER_FLEET_PROCESS = 2500


class Fleets:
    """The simulated nodes of a run, in as many processes as NODES_PER_FLEET_PROCESS asks for."""

    def __init__(self, env: Environment, scenario: JobScenario, ws_urls: list[str]) -> None:
        parts = max(1, -(-scenario.nodes // NODES_PER_FLEET_PROCESS))
        self.children = [
            Child("node fleet", fleet.run, _fleet_config(env, scenario, ws_urls, count, parts))
            for count in split_evenly(scenario.nodes, parts)
        ]

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def start(self, ready_timeout: float) -> Fleets:
        for child in self.children:
            child.start(ready_timeout=None)
        for child in self.children:
            child.wait_ready(ready_timeout)
        return self

    def stop(self) -> fleet.FleetOutcome:
        outcomes: list[fleet.FleetOutcome] = [child.stop() for child in self.children]
        return fleet.FleetOutcome(
            registered=sum(o.registered for o in outcomes),
            assigned_at={job: at for o in outcomes for job, at in o.assigned_at.items()},
            jobs_completed=sum(o.jobs_completed for o in outcomes),
            peak_concurrency=max(o.peak_concurrency for o in outcomes),
            errors=sum(o.errors for o in outcomes),
            register_s=max(o.register_s for o in outcomes),
            dependency_down=sum(o.dependency_down for o in outcomes),
            loop_lag_s=[lag for o in outcomes for lag in o.loop_lag_s],
        )


def _processes(env: Environment, scenario: JobScenario, servers: list[Any], nodes: Fleets) -> dict[str, list[int]]:
    processes = {f"web-{i + 1} ({scenario.server})": [s.pid or 0] for i, s in enumerate(servers)}
    return processes | {"redis-server": [env.redis.pid or 0], "bench nodes": nodes.pids}


def _run_python(env: Environment, scenario: JobScenario, servers: list[Any], nodes: Fleets,
                profile: Path | None) -> tuple[Window, list[submit.Finished]]:  # fmt: skip
    config = submit.SubmitConfig([s.url for s in servers], env.api_key, scenario.concurrency, scenario.rate)
    submitters = Child("submitters", submit.run, config).start(ready_timeout=60)
    try:
        time.sleep(scenario.warmup_s)
        processes = _processes(env, scenario, servers, nodes) | {"bench submitters": [submitters.pid]}
        profiler = Profiler(servers[0].pid or 0, scenario.duration_s, profile) if profile else None
        window = _measure(env, scenario.duration_s, processes, profiler, servers)
    finally:
        finished: list[submit.Finished] = submitters.stop()
    return window, finished


def _run_wrk(env: Environment, scenario: JobScenario, servers: list[Any], nodes: Fleets,
             profile: Path | None) -> tuple[Window, list[submit.Finished], dict[str, Any]]:  # fmt: skip
    """wrk processes (one per instance, the connections split evenly) running past the window on both sides;
    closed loop only (wrk has no pacing of its own)."""
    if scenario.rate is not None:
        raise ValueError("the wrk load generator runs closed loop only: no --rate")
    body = {"src_lang": "en", "tgt_lang": "zh", "audio": base64.b64encode(framed_audio(random.Random(7), 3200)).decode(),
            "audio_format": "opus", "sample_rate": 16000}  # fmt: skip
    shares = [(s.url, n) for s, n in zip(servers, split_evenly(scenario.concurrency, len(servers)), strict=True) if n]
    # A warm-up run of its own first: wrk reports latencies over its whole run, and the first requests (new
    # connections, scripts loading, caches filling) would otherwise count against the window's percentiles.
    warmups = [wrk.Wrk(wrk.WrkConfig(url, env.api_key, body, n, scenario.warmup_s)).start() for url, n in shares]
    try:
        for run in warmups:
            run.finish()
    finally:
        for run in warmups:
            run.stop()
    runs = [wrk.Wrk(wrk.WrkConfig(url, env.api_key, body, n, scenario.duration_s + 1)).start() for url, n in shares]
    try:
        time.sleep(0.5)
        processes = _processes(env, scenario, servers, nodes) | {"wrk": [run.pid for run in runs]}
        profiler = Profiler(servers[0].pid or 0, scenario.duration_s, profile) if profile else None
        done_before = _jobs_done(env)
        window = _measure(env, scenario.duration_s, processes, profiler, servers)
        done_in_window = _jobs_done(env) - done_before
        counts = [run.finish() for run in runs]
    finally:
        for run in runs:
            run.stop()
    totals: dict[str, Any] = {name: sum(c[name] for c in counts) for name in ("done", "other", "errors", "polls", "requests", "socket_errors")}
    totals["latency_ms"] = {q: max(c["latency_us"][q] for c in counts) / 1000 for q in ("p50", "p95", "p99", "max")}
    totals["done_in_window"] = done_in_window
    return window, [], totals


def _jobs_done(env: Environment) -> int:
    """Jobs the scheduler ended DONE so far, by its own cumulative counter (scheduler/stats.py)."""
    from core.redis import keys

    return int(env.client().hget(keys().stats_counters, "ended:DONE") or 0)


def _fleet_config(env: Environment, scenario: JobScenario, ws_urls: list[str], nodes: int, parts: int) -> fleet.FleetConfig:
    return fleet.FleetConfig(
        ws_urls=ws_urls, token=env.node_token, nodes=nodes, capacity=scenario.capacity,
        processing_ms=scenario.processing_ms, heartbeat_interval_s=scenario.heartbeat_interval_s,
        stagger_s=scenario.fleet_stagger_s * parts, register_timeout_s=120 + 2 * scenario.nodes * scenario.fleet_stagger_s,
    )  # fmt: skip


@dataclass(frozen=True)
class Window:
    started: float
    ended: float
    cpu: list[ProcessUsage]
    redis_calls: dict[str, int]
    profile: dict[str, Any] | None
    loop: dict[str, Any] = field(default_factory=dict)


def _measure(env: Environment, duration_s: float, processes: dict[str, list[int]], profiler: Profiler | None,
             servers: list[Any] | None = None) -> Window:  # fmt: skip
    from bench import heartbeats

    client = env.client()
    cpu = CpuWindow(processes)
    metrics_dir = servers[0].extra_env.get("PROMETHEUS_MULTIPROC_DIR") if servers else None
    metrics_before = heartbeats.read_metrics(metrics_dir) if metrics_dir else None
    calls_before = command_calls(client)
    cpu.start()
    started = time.time()
    if profiler:
        profiler.start()
    time.sleep(duration_s)
    ended = time.time()
    usage = cpu.stop()
    calls = command_delta(calls_before, command_calls(client))
    loop: dict[str, Any] = {}
    if metrics_dir and metrics_before:
        # What held the web processes' event loops in the window (every web process writes the same folder).
        after = heartbeats.read_metrics(metrics_dir)
        loop = {
            "event_loop_lag_ms": heartbeats.quantiles_ms(metrics_before, after, "lag"),
            "gc_passes": {name: round(series.get(float("inf"), 0.0) - metrics_before.others.get(name, {}).get(float("inf"), 0.0))
                          for name, series in sorted(after.others.items()) if name.startswith("gc:")},
            "gc_pause_p99_le_ms": {name: heartbeats.quantiles_ms(metrics_before, after, name)["p99_le"]
                                   for name in sorted(after.others) if name.startswith("gc:")},
        }  # fmt: skip
    return Window(started, ended, usage, calls, profiler.finish() if profiler else None, loop)


def _report(env: Environment, scenario: JobScenario, window: Window, finished: list[submit.Finished],
            outcome: fleet.FleetOutcome, wrk_counts: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    seconds = window.ended - window.started
    inside = [job for job in finished if window.started <= job.done_at < window.ended]
    done = [job for job in inside if job.state == "DONE"]
    completed = wrk_counts["done_in_window"] if wrk_counts else len(done)
    per_job = max(completed, 1)
    scheduling, dispatching = _scheduling_latencies(env, outcome.assigned_at, window)
    total_calls = sum(window.redis_calls.values())
    return {
        "scenario": asdict(scenario),
        "window_s": round(seconds, 3),
        "completed": completed,
        "not_done": _count_states(job for job in inside if job.state != "DONE"),
        "throughput_jobs_per_s": round(completed / seconds, 2),
        "end_to_end_ms": _wrk_end_to_end(wrk_counts) if wrk_counts else summary_ms(
            job.latency_s for job in done if job.latency_s is not None
        ),
        "scheduling_ms": summary_ms(scheduling),
        # The server's part of it: created_at -> dispatched_at, both stamped by Redis TIME in the job's scripts
        # (without the frame's way to the node and the node process's own event loop).
        "dispatching_ms": summary_ms(dispatching),
        **window.loop,
        "redis_commands_per_job": round(total_calls / per_job, 2),
        "redis_commands_top_per_job": {name: round(n / per_job, 2) for name, n in list(window.redis_calls.items())[:12]},
        "processes": usage_rows(window.cpu, seconds, completed),
        "fleet": fleet.describe(outcome),
        "profile": window.profile,
        # wrk: its own counts over its whole run; its latencies are per request (module docstring of bench/wrk.py).
        **({"wrk": wrk_counts} if wrk_counts else {}),
    }


def _wrk_end_to_end(counts: dict[str, Any]) -> dict[str, Any]:
    """wrk's request latencies are the jobs' end-to-end latencies (POST with `?wait` to the answer) when every
    job was answered by its POST (no GET long-poll followed); otherwise a job's latency spans requests wrk
    times apart, and none is given. Over wrk's whole run, not only the window."""
    latency = counts.get("latency_ms") or {}
    if counts.get("polls") or not latency:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {"count": counts.get("requests", 0), **latency}


def _count_states(jobs: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        key = f"{job.state}:{job.reason}" if job.state else "unfinished"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _scheduling_latencies(env: Environment, assigned_at: dict[str, float], window: Window) -> tuple[list[float], list[float]]:
    """For first attempts of jobs created in the window: created_at (server, ms) -> job_assign at the node,
    and created_at -> dispatched_at (both Redis TIME)."""
    from core.redis import keys

    job_ids = list(assigned_at)
    pipe = env.client().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(keys().job(job_id), ["created_at", "dispatched_at", "attempt_id"])
    latencies, dispatching = [], []
    for job_id, (created_ms, dispatched_ms, attempt) in zip(job_ids, pipe.execute(), strict=True):
        if created_ms is None:
            continue
        created = int(created_ms) / 1000
        if window.started <= created < window.ended:
            latencies.append(assigned_at[job_id] - created)
            if dispatched_ms and attempt == "1":
                dispatching.append((int(dispatched_ms) - int(created_ms)) / 1000)
    return latencies, dispatching
