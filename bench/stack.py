"""A fresh stack for a benchmark: its own Redis, a SQLite database in a temp folder, one web server
process, a node token and an API key. Benchmarks are scripts, so like the `make run` supervisor they set
the environment before Django starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import django

from scheduler.embedded_redis import RedisProcess


@dataclass(frozen=True)
class Stack:
    url: str
    ws_url: str
    node_token: str
    api_key: str
    server_pid: int
    server_log: Path | None


@contextmanager
def scheduler_stack(server_env: dict[str, str] | None = None) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ.update(DJANGO_SETTINGS_MODULE="scheduler.settings", DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}")
    with RedisProcess() as redis:
        os.environ["REDIS_URL"] = redis.url
        django.setup()
        from django.core.management import call_command

        from access.models import ApiKey, Scope
        from nodes.models import NodeToken
        from tests.support.processes import AsgiServer

        call_command("migrate", verbosity=0)
        _, token = NodeToken.issue("bench")
        _, key = ApiKey.issue("bench", [Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.NODES_READ])
        env = {"REDIS_URL": redis.url, "DATABASE_URL": os.environ["DATABASE_URL"], "LOG_LEVEL": "WARNING", **(server_env or {})}
        with AsgiServer(env=env) as server:
            yield Stack(server.url, server.ws_url, token, key, server.pid or 0, server.log_path)
