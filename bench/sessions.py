"""Sessions under load: web-client sessions (sessions/simulator.py) streaming Opus Plan A over `/ws/session`,
each utterance a job for simulated nodes that answer at once (0 ms of node work).

Two scenarios, each on a fresh Redis and a fresh server:

- throughput: K sessions as fast as possible (chunks back to back, one utterance in flight per session),
  a closed loop like the REST scenario; utterances translated per second inside the window, `is_final` ->
  `translation_result` latency, and the server's CPU per utterance job (from /proc, not from the server);
- streaming: N sessions at the pace of speech (a 256 ms chunk every 256 ms while speaking, a silence
  between utterances) on one instance; the server's RSS and the p99 from `is_final` to
  `translation_result` of the utterances whose `is_final` left inside the window.

The session clients run in child processes of their own (several for many sessions), like the node fleet,
so that the clients' CPU does not show up as scheduler latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from bench import fleet
from bench.child import Child, split_evenly
from bench.measure import CpuWindow, command_calls, command_delta, peak_rss_mib, rss_mib, usage_rows
from bench.stack import Environment, ServerKind, reset_redis, web_servers
from supervisor.webserver import DEFAULT_SERVER

# Per key: the bench opens every session with one key.
SERVER_ENV = {"SESSIONS_MAX_PER_KEY": "100000", "SESSIONS_MAX_AUDIO_BYTES_PER_S": "10000000"}


@dataclass(frozen=True)
class SessionScenario:
    label: str
    sessions: int
    realtime: bool
    server: ServerKind = DEFAULT_SERVER  # type: ignore[assignment]
    nodes: int = 10
    capacity: int = 8
    chunks_per_utterance: int = 4
    silence_s: float = 1.0
    client_processes: int = 1
    ramp_s: float = 0.0
    warmup_s: float = 3.0
    duration_s: float = 10.0


@dataclass(frozen=True)
class ClientsConfig:
    url: str
    sessions: int
    realtime: bool
    chunks_per_utterance: int
    silence_s: float
    ramp_s: float


# (is_final sent at, result at or None, frame kind, reason): picklable and small.
Record = tuple[float, float | None, str, str]


def clients_main(config: ClientsConfig, ready: Event, stop: Event, sender: Connection) -> None:
    """Child process: run the sessions until the parent says stop; send back every utterance's record."""
    from sessions.simulator import ClientConfig, run_clients

    client_config = ClientConfig(url=config.url, chunks_per_utterance=config.chunks_per_utterance,
                                 realtime=config.realtime, silence_s=config.silence_s)  # fmt: skip

    async def main() -> tuple[list[Record], int, int, list[str]]:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopping.set)), daemon=True).start()
        loop.call_later(config.ramp_s + 0.5, ready.set)
        outcomes = await run_clients(client_config, config.sessions, stopping, ramp_s=config.ramp_s)
        records = [(r.final_sent_at, r.result_at, r.kind, r.reason) for o in outcomes for r in o.records]
        errors = [e for o in outcomes for e in o.errors]
        return records, sum(o.connected for o in outcomes), len(errors), errors[:5]

    sender.send(asyncio.run(main()))


def run(env: Environment, scenario: SessionScenario) -> dict[str, Any]:
    reset_redis(env)
    with web_servers(env, scenario.server, 1, SERVER_ENV) as (server,):
        nodes = Child("node fleet", fleet.run, fleet.FleetConfig(
            ws_urls=[server.ws_url], token=env.node_token, nodes=scenario.nodes, capacity=scenario.capacity, processing_ms=0.0,
        ))  # fmt: skip
        nodes.start(ready_timeout=180)
        clients: list[Child] = []
        try:
            url = f"{server.ws_url}/ws/session?token={env.api_key}"
            for index, count in enumerate(split_evenly(scenario.sessions, scenario.client_processes)):
                config = ClientsConfig(url, count, scenario.realtime, scenario.chunks_per_utterance, scenario.silence_s, scenario.ramp_s)
                clients.append(Child(f"session clients {index + 1}", clients_main, config).start(ready_timeout=120 + scenario.ramp_s))
            time.sleep(scenario.warmup_s)
            processes = {f"web ({scenario.server})": [server.pid or 0], "redis-server": [env.redis.pid or 0],
                         "bench nodes": [nodes.pid], **{c.name: [c.pid] for c in clients}}  # fmt: skip
            redis_client = env.client()
            cpu = CpuWindow(processes)
            calls_before = command_calls(redis_client)
            cpu.start()
            started = time.time()
            time.sleep(scenario.duration_s)
            ended = time.time()
            usage = cpu.stop()
            calls = command_delta(calls_before, command_calls(redis_client))
            server_rss, server_peak = rss_mib(server.pid or 0), peak_rss_mib(server.pid or 0)
            results = [c.stop(timeout=120) for c in clients]
        finally:
            for child in clients:
                child.kill()
            nodes.stop()
    return _report(scenario, started, ended, usage, calls, server_rss, server_peak, results)


def _report(scenario: SessionScenario, started: float, ended: float, usage: Any, calls: dict[str, int],
            server_rss: float, server_peak: float, results: list[Any]) -> dict[str, Any]:  # fmt: skip
    from sessions.simulator import percentile

    seconds = ended - started
    records: list[Record] = [r for result in results for r in result[0]]
    inside = [r for r in records if started <= r[0] < ended]
    translated = [r for r in inside if r[2] == "translation_result" and r[1] is not None]
    latencies = sorted((r[1] - r[0]) * 1000 for r in translated)  # type: ignore[operator]
    missing: dict[str, int] = {}
    for r in inside:
        if r[2] == "missing_result":
            missing[r[3]] = missing.get(r[3], 0) + 1
    completed = len(translated)
    return {
        "scenario": asdict(scenario),
        "window_s": round(seconds, 3),
        "connected": sum(result[1] for result in results),
        "utterances": len(inside),
        "translated": completed,
        "missing": missing,
        "unanswered": sum(1 for r in inside if r[1] is None),
        "client_errors": sum(result[2] for result in results),
        "first_errors": [e for result in results for e in result[3]][:5],
        "throughput_utterances_per_s": round(completed / seconds, 2),
        "final_to_result_ms": {
            "count": completed,
            **{f"p{q}": None if not latencies else round(percentile(latencies, q / 100), 2) for q in (50, 95, 99)},
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "server_rss_mib": round(server_rss, 1),
        "server_peak_rss_mib": round(server_peak, 1),
        "redis_commands_per_utterance": round(sum(calls.values()) / max(completed, 1), 2),
        "processes": usage_rows(usage, seconds, completed),
    }


def throughput_scenario(args: Any) -> SessionScenario:
    return SessionScenario(label="throughput", sessions=args.session_concurrency, realtime=False, nodes=args.nodes,
                           capacity=args.capacity, chunks_per_utterance=1, warmup_s=args.warmup, duration_s=args.duration)  # fmt: skip


def streaming_scenario(args: Any) -> SessionScenario:
    return SessionScenario(
        label="streaming", sessions=args.streaming_sessions, realtime=True, nodes=args.nodes, capacity=args.capacity,
        chunks_per_utterance=args.streaming_chunks, silence_s=args.streaming_silence, client_processes=2,
        ramp_s=args.streaming_ramp, warmup_s=max(args.warmup, 5.0), duration_s=max(args.duration, 20.0),
    )  # fmt: skip


def with_server(scenario: SessionScenario, server: ServerKind) -> SessionScenario:
    return replace(scenario, server=server)
