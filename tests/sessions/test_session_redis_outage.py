"""Redis goes away under a streaming session: each utterance that cannot be submitted gets a clear
`missing_result` `DEPENDENCY_DOWN` (with a log line and a metric), the socket and the server live on, and
the same session streams again once Redis is back (empty, as after a wipe)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.embedded_redis import RedisProcess
from tests.conftest import point_at_redis
from tests.factories import heartbeat_message
from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient
from tests.support.metrics import scrape_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as redis:
        point_at_redis(settings, redis.url)
        yield redis


async def answer(node, node_id: str, client: SessionClient, index: int) -> dict:  # type: ignore[no-untyped-def]
    assign = await node.expect("job_assign", timeout=10)
    assert assign["utterance_index"] == index
    await node.send(result_for(assign, node_id))
    result = await client.expect("translation_result", timeout=10)
    assert result["utterance_index"] == index
    return result


@pytest.mark.timeout(120)
async def test_a_streaming_session_hears_dependency_down_while_redis_is_away_and_streams_again_after(
    own_redis, start_session_server, node_token, sessions_key
):
    server = start_session_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5")
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    await answer(node, node_id, client, 0)

    own_redis.kill()
    await client.speak()
    await client.speak()
    missing = [await client.expect("missing_result", timeout=15) for _ in range(2)]

    # Results go out as they come (docs/sessions.md), so in either order.
    assert sorted((m["utterance_index"], m["reason"]) for m in missing) == [(1, "DEPENDENCY_DOWN"), (2, "DEPENDENCY_DOWN")]
    assert all(m["session_id"] == client.session_id and m["message"] for m in missing)
    assert not [f for f in client.frames if f["type"] == "error"], "a refusal of the server's own state is not a protocol error"
    assert server.is_running()
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")  # the socket lives on

    own_redis.restart()  # empty
    await node.send(heartbeat_message(node_id))  # the node's next heartbeat registers it again
    await node.expect("node_status")
    await client.speak()
    await answer(node, node_id, client, 3)

    log = server.log_path.read_text()
    assert log.count('"event": "redis_down"') >= 2 and "utterance not submitted: Redis unavailable" in log
    samples = scrape_url(server.url)
    assert samples[("scheduler_redis_errors_total", (("operation", "session_submit"),))] >= 2
    assert samples[("scheduler_session_results_total", (("kind", "missing_result"),))] >= 2
    await client.close()
    await node.close()


@pytest.mark.timeout(60)
async def test_an_utterance_whose_job_a_redis_wipe_took_before_the_mirror_had_it_gets_state_lost(
    own_redis, start_session_server, node_token, sessions_key
):
    # No audit writer runs here, so the job's creation never reaches the database: after the wipe neither
    # Redis nor the mirror knows it (architecture.md, "What a Redis loss costs").
    server = start_session_server(REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT="0.5")
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign", timeout=10)

    own_redis.restart()  # SIGKILL, back empty

    missing = await client.expect("missing_result", timeout=15)
    assert (missing["utterance_index"], missing["reason"], missing["job_id"]) == (0, "STATE_LOST", assign["job_id"])
    assert "INTERNAL_ERROR" not in server.log_path.read_text()
    assert '"event": "job_state_lost"' in server.log_path.read_text()
    await client.close()
    await node.close()
