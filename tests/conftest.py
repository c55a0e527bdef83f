"""Shared fixtures: one real redis-server per test session (flushed before each test), and real ASGI server
processes for end-to-end tests. Fault tests start their own Redis so they can kill, pause or flush it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal
from urllib.parse import quote

import pytest
from channels.layers import channel_layers
from django.db import connection

from access.auth import forget_verified_keys
from core import stats
from core.redis import reset_clients
from jobs import placement
from scheduler.settings import channel_layer_hosts
from supervisor.embedded_redis import RedisProcess
from tests.support.processes import AsgiServer

# Node timings shortened for tests; servers started by tests get the same values.
FAST_NODE_TIMINGS = {
    "NODE_HEARTBEAT_INTERVAL_S": "0.5",
    "NODE_HEARTBEAT_TIMEOUT_S": "1.5",
    "NODE_WARMUP_TIMEOUT_S": "2.0",
    "NODE_SWEEP_INTERVAL_S": "0.2",
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        yield server


def point_at_redis(settings, url: str) -> None:
    """Point this process's settings, clients and channel layer at the Redis at `url`."""
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {"hosts": channel_layer_hosts(url), "prefix": "sched:asgi", "capacity": 1000, "expiry": 30},
        }
    }
    reset_clients()
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def redis_url(redis_server: RedisProcess, settings) -> Iterator[str]:
    redis_server.flushall()
    point_at_redis(settings, redis_server.url)
    for name, value in FAST_NODE_TIMINGS.items():
        setattr(settings, name, float(value))
    # Tests revoke keys and expect the next request to fail; the cache has its own test.
    settings.API_KEY_CACHE_S = 0
    settings.METRICS_SNAPSHOT_MAX_AGE_S = 0
    forget_verified_keys()
    # Live-page counts a previous test's jobs left unflushed belong to that test's Redis.
    stats.forget_unflushed()
    # So do the pool members this process sampled last (a first reservation guesses among them).
    placement.forget_samples()
    yield redis_server.url
    reset_clients()
    channel_layers.backends.clear()


def database_url() -> str:
    """A URL for the test database, for server processes started by tests."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = quote(params.get("USER") or "")
    password = f":{quote(params['PASSWORD'])}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{params['NAME']}"


@pytest.fixture
def server_env(transactional_db, redis_url: str) -> dict[str, str]:
    """Environment for a scheduler process sharing this test's Redis and database."""
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url(),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "SECRET_KEY": "test-secret",
        # Gauges read fresh on every scrape: tests watch them follow one change at a time.
        "METRICS_SNAPSHOT_MAX_AGE_S": "0",
        **FAST_NODE_TIMINGS,
    }


@pytest.fixture
def start_server(server_env: dict[str, str]) -> Iterator[Callable[..., AsgiServer]]:
    """Start real ASGI server processes; every one is killed at teardown, even when the test fails."""
    started: list[AsgiServer] = []

    def start(*, server: Literal["daphne", "uvicorn"] | None = None, extra_args: Sequence[str] = (), **overrides: str) -> AsgiServer:
        """`server` and `extra_args` as AsgiServer takes them; every other keyword is an environment variable."""
        process = AsgiServer(env={**server_env, **overrides}, server=server, extra_args=extra_args)
        started.append(process)
        process.start()
        return process

    yield start
    for server in started:
        server.kill()


@pytest.fixture(autouse=True)
def _close_database_connections() -> Iterator[None]:
    # Threads that touched the database keep their connection open; PostgreSQL then refuses to drop the
    # test database at the end of the run. Each test leaves the main thread's connection closed.
    yield
    from django.db import connections

    connections.close_all()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The fuzzers' case counts (their `fuzz_cases` property) at the end of the run; properties travel back
    from pytest-xdist workers with the reports, printed output would not."""
    counts = [
        value
        for status in ("passed", "failed")
        for report in terminalreporter.stats.get(status, [])
        for name, value in getattr(report, "user_properties", [])
        if name == "fuzz_cases"
    ]
    if counts:
        terminalreporter.write_sep("-", "fuzz cases tried")
        for line in counts:
            terminalreporter.write_line(line)
