"""The embedded redis-server that `make run` and the fault tests rely on, exercised as a real process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import redis

from supervisor.embedded_redis import RedisProcess, RedisStartError


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    with RedisProcess() as process:
        yield process


def client(server: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)


def test_it_serves_on_a_free_loopback_port_that_is_not_6379(server: RedisProcess) -> None:
    assert server.port != 6379
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    with client(server) as connection:
        connection.set("greeting", "hello")
        assert connection.get("greeting") == b"hello"
        assert connection.config_get("save") == {"save": ""}
        assert connection.config_get("appendonly") == {"appendonly": "no"}


def test_a_paused_server_times_clients_out_until_it_is_resumed(server: RedisProcess) -> None:
    with client(server) as connection:
        connection.set("key", "value")
        server.pause()
        try:
            with pytest.raises(redis.TimeoutError):
                connection.get("key")
        finally:
            server.resume()
        with client(server) as fresh:
            assert fresh.get("key") == b"value"


def test_a_killed_server_restarts_empty_on_the_same_port(server: RedisProcess) -> None:
    port = server.port
    first_pid = server.pid
    with client(server) as connection:
        connection.set("key", "value")
    server.kill()
    assert not server.is_running()
    with client(server) as connection, pytest.raises(redis.ConnectionError):
        connection.ping()

    server.restart()

    assert server.port == port
    assert server.pid != first_pid
    with client(server) as connection:
        assert connection.get("key") is None


def test_flushall_removes_every_key(server: RedisProcess) -> None:
    with client(server) as connection:
        connection.set("a", "1")
        connection.select(1)
        connection.set("b", "2")
        server.flushall()
        assert connection.dbsize() == 0
        connection.select(0)
        assert connection.dbsize() == 0


def test_stop_ends_the_process_and_removes_its_temp_dir() -> None:
    process = RedisProcess().start()
    pid = process.pid
    directory = process.log_path.parent if process.log_path else None
    assert pid is not None and directory is not None and directory.is_dir()

    process.stop()

    assert not process.is_running()
    assert not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_taken_port_fails_with_a_clear_error_that_quotes_the_redis_log() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(
            RedisStartError, match=f"port {port}.*already in use(?s:.*)Address already in use"
        ):
            RedisProcess(port=port).start()
