"""The stack a chaos run breaks: one Redis with its append-only file in the run's folder (so it can come
back with its data, or be wiped), two web processes on ports of their own, two Celery workers (both compete
for the pool lease) and beat, and one process per simulated node.

Built on `bench.stack.bench_environment` (Redis, database, node token, API key) and the process helpers of
`tests/support/processes.py`; every process is started from the main thread, in a process group of its own,
and dies with the run (see `child_preexec`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.stack import Environment, bench_environment
from chaos.scenario import STACK_TIMINGS, Scenario
from supervisor.embedded_redis import child_preexec
from tests.support.processes import BASE_DIR, AsgiServer, CeleryProcess


class NodeProcess:
    """One `python -m chaos.node`; `start()` again after `kill()` brings the node back with its old id."""

    def __init__(self, name: str, profile: str, spec: dict[str, object], log_dir: Path) -> None:
        self.name = name
        self.profile = profile
        self.spec = spec
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.node_id: str | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chaos.node"],
                cwd=BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=child_preexec(signal.SIGKILL),
            )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({**self.spec, "node_id": self.node_id}).encode())
        self.process.stdin.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.is_running():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            assert self.process is not None
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    env: Environment
    run_dir: Path
    redis_data: Path
    webs: list[AsgiServer]
    workers: list[CeleryProcess]
    beat: CeleryProcess
    nodes: list[NodeProcess] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [web.url for web in self.webs]

    def worker_of(self, holder: str) -> CeleryProcess | None:
        """The worker whose Celery node name starts the lease holder `<hostname>/<instance>`."""
        for worker in self.workers:
            if holder.startswith(worker.node_name.split("@")[0] + "@"):
                return worker
        return None

    def restart_redis(self, keep_data: bool) -> None:
        """SIGKILL Redis and start it again on its port: with the append-only file, or empty."""
        self.env.redis.kill()
        if not keep_data:
            for entry in self.redis_data.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self.env.redis.restart()


def process_env(env: Environment) -> dict[str, str]:
    return {
        "REDIS_URL": env.redis.url,
        "DATABASE_URL": env.database_url,
        "SECRET_KEY": "chaos-run",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **STACK_TIMINGS,
    }


@contextmanager
def chaos_stack(scenario: Scenario, run_dir: Path, database_url: str | None = None) -> Iterator[Stack]:
    redis_data = run_dir / "redis"
    redis_data.mkdir(parents=True, exist_ok=True)
    # everysec, as recommended for production: a SIGKILLed Redis has already written every reply's change to
    # the file (the write happens before the replies go out); only a machine crash loses up to a second.
    redis_args = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(redis_data)]
    with bench_environment("chaos-", redis_args, database_url, STACK_TIMINGS) as env, ExitStack() as stack:
        variables = process_env(env)
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        webs = [stack.enter_context(AsgiServer(env=variables, start_timeout=60)) for _ in range(2)]
        workers = [stack.enter_context(CeleryProcess(env=variables, start_timeout=60)) for _ in range(2)]
        beat = stack.enter_context(CeleryProcess(env=variables, kind="beat", start_timeout=60))
        result = Stack(env, run_dir, redis_data, webs, workers, beat)
        index = 0
        for profile, count in scenario.fleet.items():
            for _ in range(count):
                index += 1
                name = f"{profile}-{index}"
                spec = {
                    "name": name,
                    "profile": profile,
                    # Nodes spread over both web processes and fail over to the other, as behind a load balancer.
                    "urls": [f"{webs[(index + k) % 2].ws_url}/ws/node" for k in range(2)],
                    "token": env.node_token,
                    "heartbeat_interval_s": STACK_TIMINGS["NODE_HEARTBEAT_INTERVAL_S"],
                    "history": str(run_dir / "nodes.jsonl"),
                    "seed": index,
                }
                result.nodes.append(NodeProcess(name, profile, spec, logs))
        try:
            for node in result.nodes:
                node.start()
            yield result
        finally:
            for node in result.nodes:
                node.stop()
            for process in [*webs, *workers, beat]:
                # A process left stopped by an interrupted fault would hold its SIGTERM until continued.
                if process.pid is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGCONT)
            for process in [*webs, *workers, beat]:
                with contextlib.suppress(Exception):
                    shutil.copy(process.log_path, logs / f"{process.label.replace(' ', '-')}-{process.pid}.log")  # type: ignore[arg-type]
