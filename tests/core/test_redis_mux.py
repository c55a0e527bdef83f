"""The job path's multiplexed Redis client (core/redis_mux.py) against real redis-server processes: replies
reach the callers that asked, in any interleaving; errors read as redis-py's; a restart, a kill and a
pause (SIGSTOP) behave as the redis-py client the rest of the project uses."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from core import redis_mux, scripts
from core.redis import keys
from supervisor.embedded_redis import RedisProcess

# node_heartbeat.lua's arguments for a node Redis does not know (it answers UNKNOWN).
HEARTBEAT_ARGS = ["conn", "token", "1", 1000, 1000, 3, 10, 5, 60, "{}", "", "ok"]


@pytest.fixture
def own_redis(settings):
    with RedisProcess() as server:
        settings.REDIS_URL = server.url
        settings.REDIS_SOCKET_TIMEOUT = 0.5
        redis_mux.forget()
        yield server
    redis_mux.forget()


async def test_a_thousand_concurrent_commands_each_get_their_own_reply(redis_url):
    client = redis_mux.get_mux()
    await client.pipeline([("SET", f"k{i}", f"v{i}") for i in range(1000)])

    async def read(i: int) -> tuple[int, str]:
        return i, await client.execute("GET", f"k{i}")

    replies = await asyncio.gather(*(read(i) for i in reversed(range(1000))))
    assert all(value == f"v{i}" for i, value in replies)
    pipelines = await asyncio.gather(*(client.pipeline([("GET", f"k{i}"), ("STRLEN", f"k{i}")]) for i in range(200)))
    assert pipelines == [[f"v{i}", len(f"v{i}")] for i in range(200)]


async def test_error_replies_are_redis_py_exceptions_raised_alone_or_returned_in_a_pipeline(redis_url):
    client = redis_mux.get_mux()
    await client.execute("SET", "s", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await client.execute("HGET", "s", "f")
    with pytest.raises(redis.exceptions.NoScriptError):
        await client.execute("EVALSHA", "0" * 40, 0)
    first, second, third = await client.pipeline([("GET", "s"), ("LPUSH", "s", "y"), ("STRLEN", "s")])
    assert (first, third) == ("x", 1)
    assert isinstance(second, redis.ResponseError) and "WRONGTYPE" in str(second)
    assert await client.hgetall("missing") == {}
    await client.execute("HSET", "h", "a", "1", "b", "é")
    assert await client.hgetall("h") == {"a": "1", "b": "é"}


async def test_a_script_redis_lost_is_sent_whole_and_runs(redis_url):
    client = redis_mux.get_mux()
    await client.execute("SCRIPT", "FLUSH")
    # node_heartbeat.lua on a node Redis does not know: it runs (and reports the node unknown) after NOSCRIPT.
    k = keys()
    node = "node-NOSCRIPT"
    reply = await scripts.run("node_heartbeat", k.node_keys(node), HEARTBEAT_ARGS)
    assert reply == ["UNKNOWN"]
    assert await client.execute("SCRIPT", "EXISTS", scripts.sha("node_heartbeat")) == [1]


async def test_commands_succeed_again_after_redis_restarts(own_redis):
    client = redis_mux.get_mux()
    await client.execute("SET", "a", "1")
    old = client.protocol
    own_redis.restart()
    # The old connection died with the server; the next command goes out on a fresh one.
    assert await client.execute("PING") == "PONG"
    assert client.protocol is not old


async def test_a_dead_redis_is_a_connection_error_within_the_retries(own_redis):
    client = redis_mux.get_mux()
    await client.execute("PING")
    own_redis.kill()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        await client.execute("PING")
    with pytest.raises(redis.ConnectionError):
        await scripts.run("node_heartbeat", keys().node_keys("n"), HEARTBEAT_ARGS)
    assert time.monotonic() - started < 3


async def test_a_frozen_redis_times_out_and_its_late_replies_answer_nobody(own_redis):
    client = redis_mux.get_mux()
    await client.execute("SET", "a", "before")
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            await client.execute("GET", "a")
        # One socket timeout per try: the first and two retries, each 0.5 s.
        assert 0.4 < time.monotonic() - started < 3
    finally:
        own_redis.resume()
    # The replies to the timed-out GETs arrive late on a connection that was dropped: a new command gets its own.
    await client.execute("SET", "b", "after")
    assert await asyncio.gather(client.execute("GET", "b"), client.execute("GET", "a")) == ["after", "before"]


async def test_the_database_and_password_of_the_url_are_used(settings):
    with RedisProcess() as server:
        server.command("CONFIG", "SET", "requirepass", "s3cret")
        settings.REDIS_URL = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        redis_mux.forget()
        try:
            await redis_mux.get_mux().execute("SET", "in-three", "yes")
            direct = redis.Redis(port=server.port, password="s3cret", db=3, decode_responses=True)
            assert direct.get("in-three") == "yes"
            assert redis.Redis(port=server.port, password="s3cret", db=0).get("in-three") is None
            settings.REDIS_URL = f"redis://:wrong@127.0.0.1:{server.port}/3"
            redis_mux.forget()
            with pytest.raises(redis.ConnectionError, match="setup"):
                await redis_mux.get_mux().execute("PING")
        finally:
            redis_mux.forget()
