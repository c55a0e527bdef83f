"""The Celery baseline: the same K concurrent submitters doing a no-op task round trip (`apply_async`, then
`.get()`) against a real `celery worker` with concurrency = nodes x capacity, broker and result backend on
the benchmark's Redis (database 1), measured over the same kind of window as the scheduler.

The client is K threads in one process (Celery's client API is blocking); each thread notes the wall-clock
time a round trip ended, so the parent keeps exactly those inside its window.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any, Literal

from bench.child import Child
from bench.measure import CpuWindow, children, command_calls, command_delta, summary_ms, usage_rows
from bench.stack import Environment, reset_redis
from tests.support.processes import CeleryProcess

Pool = Literal["threads", "prefork"]
CELERY_DB = 1


@dataclass(frozen=True)
class CeleryScenario:
    concurrency: int = 16
    worker_concurrency: int = 40
    pool: Pool = "threads"
    warmup_s: float = 3.0
    duration_s: float = 10.0


@dataclass(frozen=True)
class ClientConfig:
    url: str
    concurrency: int


class NoopWorker(CeleryProcess):
    """`celery worker` for bench.celery_app at WARNING level (an INFO line per task would be Celery paying
    for our logging). Readiness is proven by the client's first round trip, not by a log line."""

    def __init__(self, url: str, pool: Pool, concurrency: int) -> None:
        super().__init__(env={"BENCH_CELERY_URL": url}, start_timeout=60)
        self.pool, self.concurrency = pool, concurrency

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-l", "WARNING", "-n", self.node_name,
            "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def wait_ready(self) -> None:
        self._check_alive()


def client(config: ClientConfig, ready: Event, stop: Event, results: Connection) -> None:
    """Process entry point: K threads doing round trips until `stop`; sends [(done_at, latency_s)]."""
    os.environ["BENCH_CELERY_URL"] = config.url
    logging.basicConfig(level=logging.ERROR)
    from bench.celery_app import noop

    noop.apply_async().get(timeout=60)  # the worker is up
    ready.set()
    finished: list[tuple[float, float]] = []

    def loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            noop.apply_async().get(timeout=30)
            finished.append((time.time(), time.perf_counter() - started))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(config.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.send(finished)


def run(env: Environment, scenario: CeleryScenario) -> dict[str, Any]:
    reset_redis(env)
    url = f"redis://127.0.0.1:{env.redis.port}/{CELERY_DB}"
    with NoopWorker(url, scenario.pool, scenario.worker_concurrency) as worker:
        submitters = Child("celery submitters", client, ClientConfig(url, scenario.concurrency)).start(ready_timeout=90)
        try:
            time.sleep(scenario.warmup_s)
            worker_pids = [worker.pid or 0, *children(worker.pid or 0)]
            cpu = CpuWindow({f"celery worker ({scenario.pool})": worker_pids, "redis-server": [env.redis.pid or 0],
                             "bench celery submitters": [submitters.pid]})  # fmt: skip
            redis_client = env.client()
            calls_before = command_calls(redis_client)
            cpu.start()
            started = time.time()
            time.sleep(scenario.duration_s)
            ended = time.time()
            usage = cpu.stop()
            calls = command_delta(calls_before, command_calls(redis_client))
        finally:
            finished: list[tuple[float, float]] = submitters.stop()
    inside = [latency for done_at, latency in finished if started <= done_at < ended]
    per_job = max(len(inside), 1)
    seconds = ended - started
    return {
        "scenario": asdict(scenario),
        "window_s": round(seconds, 3),
        "completed": len(inside),
        "throughput_jobs_per_s": round(len(inside) / seconds, 2),
        "end_to_end_ms": summary_ms(inside),
        "redis_commands_per_job": round(sum(calls.values()) / per_job, 2),
        "processes": usage_rows(usage, seconds, len(inside)),
    }
