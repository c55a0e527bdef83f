"""Redis losing its data or going away: sockets stay open, nodes come back without operator action."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from nodes import services
from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.factories import reference_heartbeat, register_message
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as redis:
        point_at_redis(settings, redis.url)
        yield redis


async def test_a_node_comes_back_with_its_id_on_the_next_heartbeat_after_redis_lost_everything(
    own_redis, start_server, node_token
):
    server = start_server(REDIS_URL=own_redis.url)
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))
    await wire.expect("node_status")

    own_redis.flushall()
    assert await services.get_node(node_id) is None
    await wire.send(reference_heartbeat(node_id))
    node = await _wait(lambda n: n is not None and n["status"] == "ready", node_id)
    assert node["pool"] == "en-zh"
    await wire.close()


async def test_a_redis_outage_keeps_the_socket_open_and_heals_after_redis_returns_empty(
    own_redis, start_server, node_token
):
    server = start_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5")
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]

    own_redis.kill()
    await wire.send(reference_heartbeat(node_id))
    error = await wire.expect("error", timeout=5)
    assert error["code"] == "DEPENDENCY_DOWN"

    own_redis.restart()  # same port, no data
    await asyncio.sleep(0.5)
    await wire.send(reference_heartbeat(node_id))
    node = await _wait(lambda n: n is not None and n["status"] == "ready", node_id, timeout=5)
    assert node["node_id"] == node_id
    assert server.is_running()
    await wire.close()


async def test_a_register_that_fails_while_redis_is_down_closes_the_socket_so_the_node_reconnects(
    own_redis, start_server, node_token
):
    """The real node never re-sends node_register on the same socket: left open, it would stay unregistered.
    Closed with 4503 (try again later), it reconnects with backoff and registers then."""
    server = start_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5")
    wire = await Wire.connect(server.ws_url, node_token)
    own_redis.kill()
    await wire.send(register_message())
    error = await wire.expect("error", timeout=5)
    assert error["code"] == "DEPENDENCY_DOWN"
    assert await wire.closed_with() == 4503

    own_redis.restart()
    await asyncio.sleep(0.5)
    again = await Wire.connect(server.ws_url, node_token)
    node_id = (await again.register())["node_id"]
    assert node_id.startswith("node-")
    await again.close()


async def test_a_token_that_cannot_be_checked_is_not_refused_as_a_bad_one(start_server, node_token):
    """The database is unreachable: not the node's fault. The handshake is accepted and closed with 4503, so
    the node retries, instead of the HTTP 403 that says its token is bad."""
    server = start_server(DATABASE_URL="postgres://nobody@127.0.0.1:9/unreachable")
    wire = await Wire.connect(server.ws_url, node_token)
    assert await wire.closed_with() == 4503
    assert "node handshake deferred: the token could not be checked" in server.log_text()
    assert node_token.partition(".")[2] not in server.log_text()


async def _wait(predicate, node_id: str, timeout: float = 3.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        node = await services.get_node(node_id)
        if predicate(node):
            return node
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {node}")
        await asyncio.sleep(0.05)
