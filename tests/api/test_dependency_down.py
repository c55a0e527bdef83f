"""Redis down: the API answers 503 DEPENDENCY_DOWN with Retry-After instead of failing (DESIGN 2.6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.embedded_redis import RedisProcess
from tests.api.conftest import HttpNode, KeyClient
from tests.conftest import point_at_redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    """A Redis of this test's own, so it can be killed without touching the session's server."""
    server = RedisProcess().start()
    point_at_redis(settings, server.url)
    yield server
    server.stop()


async def test_the_api_answers_503_dependency_down_with_retry_after_while_redis_is_down(
    own_redis: RedisProcess, issue_key, http_node: HttpNode
) -> None:
    operator = KeyClient(await issue_key("nodes:read", "nodes:write"))
    node_id = await http_node.become_ready()
    assert (await operator.get("/api/v1/nodes")).status_code == 200

    own_redis.kill()
    listed = await operator.get("/api/v1/nodes")
    drained = await operator.post(f"/api/v1/nodes/{node_id}/drain", content_type="application/json")

    for response in (listed, drained):
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "DEPENDENCY_DOWN"
        assert response.json()["error"]["details"] == {"dependency": "redis"}


async def test_the_node_link_answers_a_dependency_down_frame_while_redis_is_down(
    own_redis: RedisProcess, http_node: HttpNode
) -> None:
    await http_node.become_ready()

    own_redis.kill()
    heartbeat = await http_node.heartbeat()
    register = await http_node.register()

    for response in (heartbeat, register):
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["type"] == "error"
        assert response.json()["code"] == "DEPENDENCY_DOWN"
