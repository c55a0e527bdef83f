"""A fresh stack for a benchmark: its own Redis, a SQLite database in a temp folder, a node token and an API
key (`bench_environment`), and web server processes on it (`web_servers`), daphne or uvicorn, one or
more. Benchmarks are scripts, so like the `make run` supervisor they set the environment before Django
starts; Django is set up once per process, so one environment serves every scenario of a run and
`reset_redis` gives each scenario an empty Redis with zeroed command statistics.

`scheduler_stack` is the one-server shorthand the single-purpose benchmarks use.
"""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import django
import redis

from supervisor.embedded_redis import RedisProcess
from supervisor.webserver import DEFAULT_SERVER
from tests.support.processes import AsgiServer

ServerKind = Literal["daphne", "uvicorn"]


@dataclass(frozen=True)
class Environment:
    workdir: Path
    redis: RedisProcess
    database_url: str
    node_token: str
    api_key: str

    def client(self) -> redis.Redis:
        """A Redis client of the benchmark's own, never one of the code under test."""
        return redis.Redis(port=self.redis.port, decode_responses=True)


@dataclass(frozen=True)
class Stack:
    url: str
    ws_url: str
    node_token: str
    api_key: str
    server_pid: int
    server_log: Path | None


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to the hard one; children started later inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextmanager
def bench_environment(
    prefix: str = "bench-",
    redis_args: Sequence[str] = (),
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Environment]:
    """`redis_args` go to redis-server after the defaults (so they override them, e.g. persistence on);
    `environ` is set before Django starts, so this process's settings see it as the servers will."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    database_url = database_url or f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ.update(DJANGO_SETTINGS_MODULE="scheduler.settings", DATABASE_URL=database_url, LOG_LEVEL="WARNING")
    os.environ.update(environ or {})
    with RedisProcess(extra_args=redis_args) as redis_process:
        os.environ["REDIS_URL"] = redis_process.url
        django.setup()
        from django.core.management import call_command

        from access.models import ApiKey, Scope
        from nodes.models import NodeToken

        call_command("migrate", verbosity=0)
        _, token = NodeToken.issue("bench")
        _, key = ApiKey.issue("bench", [Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.NODES_READ, Scope.SESSIONS])
        yield Environment(workdir, redis_process, database_url, token, key)


def reset_redis(env: Environment) -> None:
    """Empty every database and zero INFO commandstats: each scenario starts from nothing."""
    client = env.client()
    client.flushall()
    client.config_resetstat()


@contextmanager
def web_servers(
    env: Environment, server: ServerKind = DEFAULT_SERVER, instances: int = 1, server_env: dict[str, str] | None = None
) -> Iterator[list[AsgiServer]]:
    """`instances` processes serving `scheduler.asgi:application`, all on the environment's Redis, with
    Prometheus multiprocess mode on as `make run` has it (a fresh folder per call, in the server's
    `extra_env["PROMETHEUS_MULTIPROC_DIR"]`), so a benchmark can read their metrics without a scrape."""
    metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=env.workdir)
    # The simulated fleet shares one token, as a real fleet may: no per-token socket cap (docs/security.md).
    process_env = {"REDIS_URL": env.redis.url, "DATABASE_URL": env.database_url, "LOG_LEVEL": "WARNING",
                   "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "NODE_MAX_SOCKETS_PER_TOKEN": "0",
                   **(server_env or {})}  # fmt: skip
    with ExitStack() as stack:
        servers = [stack.enter_context(_server(process_env, server)) for _ in range(instances)]
        yield servers


def _server(process_env: dict[str, str], server: ServerKind, app: str | None = None) -> AsgiServer:
    # Started exactly as `make run` starts its web process (supervisor.webserver).
    if app is None:
        return AsgiServer(env=process_env, server=server, start_timeout=60)
    return AppServer(app, env=process_env, server=server, start_timeout=60)


class AppServer(AsgiServer):
    """An AsgiServer launched exactly the same way but serving another ASGI application; it must answer
    GET /healthz (and lifespan, under uvicorn)."""

    def __init__(self, app: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.app = app

    def command(self) -> list[str]:
        command = super().command()
        command[-1] = self.app
        return command


def app_server(server: ServerKind, app: str) -> AsgiServer:
    """A server for a bench-only application that needs neither Redis nor the database."""
    return _server({}, server, app)


@contextmanager
def scheduler_stack(server_env: dict[str, str] | None = None) -> Iterator[Stack]:
    with bench_environment() as env, web_servers(env, server_env=server_env) as (server,):
        yield Stack(server.url, server.ws_url, env.node_token, env.api_key, server.pid or 0, server.log_path)
