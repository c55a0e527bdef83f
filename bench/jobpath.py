"""The job path's Redis cost, counted: `python -m bench.jobpath [--jobs N] [--nodes M] [--concurrency K]`.

N jobs go through the service layer in this process exactly as the REST submit with `?wait` runs it
(`jobs.services.submit_job(wait_s=...)`: create, select, reserve, dispatch, wait), and M nodes registered
through `nodes.services` answer each `job_assign` through the handler their socket's consumer calls
(`jobs.services.on_job_result`). Only the transport is in-process: each node is a local connection
(`nodes.connections.LOCAL`), so no WebSocket or HTTP layer runs, and what is counted is the job path's own
use of a real Redis (a fresh `redis-server`, or the one `--redis-url` names, which is flushed).

Counted per job:
- Redis commands: the delta of `INFO commandstats` (commands inside scripts included; INFO itself and the
  job-ended subscription, opened once per process, excluded);
- round trips: each single command and each pipeline redis-py sends on the job path (a hook around the
  client's `execute_command` and `Pipeline.execute` that counts and passes the call on unchanged);
- CPU: this process's (service layer plus the in-process nodes), and the Redis server's (`used_cpu_*`).

The first jobs (warm-up) load the scripts and the pool configuration; only the N jobs after them count.
`--trace` prints the round trips of one job in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio.client as async_client

AUDIO = "AwBhYmM" * 600 + "="  # ~3 KiB of base64, like a short Opus utterance
_step: contextvars.ContextVar[str] = contextvars.ContextVar("step", default="other")


@dataclass
class Cost:
    jobs: int
    commands: int
    round_trips: int
    commands_by_name: Counter[str]
    round_trips_by_step: Counter[str]
    cpu_s: float
    redis_cpu_s: float
    wall_s: float
    trace: list[tuple[str, list[str]]] = field(default_factory=list)

    def per_job(self) -> dict[str, float]:
        return {
            "commands": round(self.commands / self.jobs, 2),
            "round_trips": round(self.round_trips / self.jobs, 2),
            "cpu_ms": round(self.cpu_s * 1000 / self.jobs, 3),
            "redis_cpu_ms": round(self.redis_cpu_s * 1000 / self.jobs, 3),
        }


class RoundTrips:
    """Counts what the Redis clients send (redis-py and core/redis_mux.py): one single command or one whole pipeline is one round trip."""

    def __init__(self) -> None:
        self.by_step: Counter[str] = Counter()
        self.log: list[tuple[str, list[str]]] = []
        self.recording = False

    def note(self, names: list[str]) -> None:
        if self.recording:
            self.by_step[_step.get()] += 1
            self.log.append((_step.get(), names))

    @contextlib.contextmanager
    def hooked(self) -> Iterator[RoundTrips]:
        from core.redis_mux import MuxClient

        single = async_client.Redis.execute_command
        pipelined = async_client.Pipeline.execute
        mux_single = MuxClient.execute
        mux_pipelined = MuxClient.pipeline
        counter = self

        async def mux_execute(client: Any, *args: Any) -> Any:
            counter.note([_name(args)])
            return await mux_single(client, *args)

        async def mux_pipeline(client: Any, commands: Any) -> Any:
            if commands:
                counter.note([_name(command) for command in commands])
            return await mux_pipelined(client, commands)

        async def execute_command(client: Any, *args: Any, **options: Any) -> Any:
            if not isinstance(client, async_client.Pipeline):
                counter.note([_name(args)])
            return await single(client, *args, **options)

        async def execute(pipe: Any, raise_on_error: bool = True) -> Any:
            if pipe.command_stack:
                counter.note([_name(args) for args, _ in pipe.command_stack])
            return await pipelined(pipe, raise_on_error)

        async_client.Redis.execute_command = execute_command  # type: ignore[method-assign]
        async_client.Pipeline.execute = execute  # type: ignore[method-assign]
        MuxClient.execute = mux_execute  # type: ignore[method-assign]
        MuxClient.pipeline = mux_pipeline  # type: ignore[method-assign]
        try:
            yield self
        finally:
            async_client.Redis.execute_command = single  # type: ignore[method-assign]
            async_client.Pipeline.execute = pipelined  # type: ignore[method-assign]
            MuxClient.execute = mux_single  # type: ignore[method-assign]
            MuxClient.pipeline = mux_pipelined  # type: ignore[method-assign]


@functools.cache
def _scripts_by_sha() -> dict[str, str]:
    from core import scripts

    return {scripts.sha(script): script for script in scripts.names()}


def _name(args: tuple[Any, ...]) -> str:
    name = str(args[0]).upper()
    if name == "EVALSHA":
        return f"EVALSHA({_scripts_by_sha().get(str(args[1]), '?')})"
    return name


class InProcessNode:
    """A node whose socket is this process: it answers every `job_assign` at once with the simulated node's
    success result, handed to the job path's result handler as the consumer hands it."""

    def __init__(self, builder: Any, channel: str) -> None:
        self.builder = builder
        self.channel = channel
        self.tasks: set[asyncio.Task[None]] = set()

    async def send_frame(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") == "job_assign":
            task = asyncio.create_task(self._answer(frame), context=contextvars.Context())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return True

    async def close_connection(self, code: int, conn_id: str | None) -> None:
        return None

    async def _answer(self, frame: dict[str, Any]) -> None:
        from jobs import services as jobs
        from nodes.schemas import parse_node_message

        _step.set("result")
        message = parse_node_message(self.builder.build_success_result(frame, 0))
        await jobs.on_job_result(message, self.builder.node_id)


async def start_nodes(
    count: int, capacity: int, languages: tuple[str, ...] = ("en", "zh"), name: str = "cost", acks: bool = False
) -> list[InProcessNode]:
    """`count` nodes registered and ready in the pool of `languages`, each on an in-process connection; like the
    real node they never ack unless `acks`."""
    from nodes import connections
    from nodes import services as nodes
    from nodes.registration import register_node
    from nodes.schemas import parse_node_message
    from nodes.simulator import SimulatedNode, SimulatedNodeConfig

    started = []
    for i in range(count):
        config = SimulatedNodeConfig(
            name=f"{name}-{i}", languages=list(languages), max_concurrent_jobs=capacity, processing_ms=0, send_ack=acks
        )
        builder = SimulatedNode(config)
        node = InProcessNode(builder, f"{name}.local!{i}")
        conn = nodes.Connection(token=None, channel=node.channel)
        connections.LOCAL[node.channel] = node
        registration = await register_node(parse_node_message(builder.build_register()), conn)
        builder.node_id = registration.node_id
        await nodes.record_heartbeat(parse_node_message(builder.build_heartbeat()), conn)
        started.append(node)
    return started


async def run_jobs(count: int, concurrency: int) -> None:
    """`count` jobs, `concurrency` at a time, each submitted with a wait as `POST /jobs?wait=10` does."""
    from jobs import services as jobs

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        _step.set("submit")
        while not queue.empty():
            i = queue.get_nowait()
            request = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO, "session_id": "s-cost", "utterance_index": i}
            submitted = await jobs.submit_job(request, wait_s=10)
            if submitted.job["state"] != "DONE":
                raise RuntimeError(f"job {submitted.job_id} ended {submitted.job['state']}, not DONE")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(fields["calls"]) for name, fields in stats.items()})


# The job-ended subscription is opened once per process, never per job.
NOT_PER_JOB = {"info", "subscribe", "ping", "config|resetstat", "config"}


async def measure(jobs: int, nodes: int = 2, capacity: int = 4, concurrency: int = 1, warmup: int = 5) -> Cost:
    """Run `warmup` jobs, then `jobs` jobs, against the configured Redis; the cost of the latter."""
    from core.redis import get_redis

    await start_nodes(nodes, capacity)
    await run_jobs(warmup, concurrency)
    await get_redis().ping()
    sync = redis.Redis.from_url(_url(), decode_responses=True)
    counter = RoundTrips()
    with counter.hooked():
        before, cpu_before, redis_before = _commands(sync), time.process_time(), _redis_cpu(sync)
        started = time.perf_counter()
        counter.recording = True
        await run_jobs(jobs, concurrency)
        counter.recording = False
        wall = time.perf_counter() - started
        cpu, redis_cpu, after = time.process_time() - cpu_before, _redis_cpu(sync) - redis_before, _commands(sync)
    delta = Counter({name: after[name] - before[name] for name in after if name not in NOT_PER_JOB and after[name] > before[name]})
    # With one job at a time the log is N copies of the same sequence: the first is one job's.
    first_job = counter.log[: len(counter.log) // jobs] if concurrency == 1 else []
    return Cost(jobs, sum(delta.values()), sum(counter.by_step.values()), delta, counter.by_step, cpu, redis_cpu, wall, first_job)


def _url() -> str:
    from core.redis import redis_url

    return redis_url()


def report(cost: Cost, trace: bool) -> str:
    per_job = cost.per_job()
    lines = [
        f"{cost.jobs} jobs in {cost.wall_s:.2f} s ({cost.jobs / cost.wall_s:.0f} jobs/s, one process)",
        f"Redis round trips per job: {per_job['round_trips']}  "
        + "  ".join(f"{step} {count / cost.jobs:g}" for step, count in sorted(cost.round_trips_by_step.items())),
        f"Redis commands per job:    {per_job['commands']}",
        "  " + ", ".join(f"{name} {count / cost.jobs:g}" for name, count in cost.commands_by_name.most_common()),
        f"CPU per job: this process {per_job['cpu_ms']} ms, redis-server {per_job['redis_cpu_ms']} ms",
    ]
    if trace and cost.trace:
        lines.append("Round trips of one job, in order:")
        lines += [f"  {i + 1}. [{step}] {' '.join(names)}" for i, (step, names) in enumerate(cost.trace)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobpath", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="jobs in flight at once (1: the trace is exact)")
    parser.add_argument("--redis-url", default="", help="an existing Redis to use (it is flushed); default: a fresh one")
    parser.add_argument("--trace", action="store_true", help="print the round trips of one job")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="jobpath-"))
    os.environ.update(DJANGO_SETTINGS_MODULE="scheduler.settings", DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}", LOG_LEVEL="WARNING")
    with contextlib.ExitStack() as stack:
        if args.redis_url:
            url = args.redis_url
        else:
            from supervisor.embedded_redis import RedisProcess

            url = stack.enter_context(RedisProcess()).url
        os.environ["REDIS_URL"] = url
        import django

        django.setup()
        from django.core.management import call_command

        # Pool creation mirrors each configuration version to the database.
        call_command("migrate", verbosity=0)
        client = redis.Redis.from_url(url)
        client.flushall()
        client.config_resetstat()
        cost = asyncio.run(measure(args.jobs, args.nodes, args.capacity, args.concurrency))
    print(report(cost, args.trace))
    print(f"(peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")


if __name__ == "__main__":
    main()
