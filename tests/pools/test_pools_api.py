"""GET /api/v1/pools: the live configuration with sizes, the overflow pool and the leader, behind pools:read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from django.test import AsyncClient

from core.redis import get_redis, keys
from nodes import services
from pools.leader import Leader
from supervisor.embedded_redis import RedisProcess
from tests.api.conftest import KeyClient
from tests.conftest import point_at_redis
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)

POOLS = "/api/v1/pools"


async def test_the_pools_answer_lists_each_pool_with_its_size_and_ready_count_and_the_overflow_pool_last(
    pools_reader: KeyClient,
) -> None:
    a, _ = await start(["en", "zh"])
    await start(["zh", "en"])
    await start(["de", "en"])
    await services.drain_node(a, "ops")

    response = await pools_reader.get(POOLS)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"version", "epoch", "leader", "generated_at", "pools"}
    assert body["version"] == 2
    assert body["leader"] is None
    assert datetime.fromisoformat(body["generated_at"].replace("Z", "+00:00")).year >= 2024
    by_name = {pool["name"]: pool for pool in body["pools"]}
    assert by_name["en-zh"] == {
        "pool_id": by_name["en-zh"]["pool_id"],
        "name": "en-zh",
        "languages": ["en", "zh"],
        "required_services": ["asr", "nmt", "tts"],
        "size": 1,
        "ready": 1,
        "capacity": 4,
        "reserved": 0,
        "running": 0,
    }
    assert (by_name["de-en"]["size"], by_name["de-en"]["ready"]) == (1, 1)
    assert body["pools"][-1] == {
        "pool_id": 0,
        "name": "overflow",
        "languages": [],
        "required_services": ["asr", "nmt", "tts"],
        "size": 0,
        "ready": 0,
        "capacity": 0,
        "reserved": 0,
        "running": 0,
    }


async def test_a_stranded_node_is_shown_in_the_overflow_pool(pools_reader: KeyClient, settings) -> None:
    settings.POOL_MAX_POOLS = 1
    await start(["en", "zh"])
    await start(["ja", "ko"])

    pools = (await pools_reader.get(POOLS)).json()["pools"]

    assert [(p["name"], p["size"]) for p in pools] == [("en-zh", 1), ("overflow", 1)]


async def test_the_leader_holding_the_lease_and_its_epoch_are_shown(pools_reader: KeyClient) -> None:
    await start(["en", "zh"])
    leader = Leader("worker-1/abc")
    await leader.step()

    body = (await pools_reader.get(POOLS)).json()

    assert (body["leader"], body["leader_epoch"], body["epoch"]) == ("worker-1/abc", 1, 1)
    assert body["generated_by"] == "worker-1/abc"
    await leader.release()
    assert (await pools_reader.get(POOLS)).json()["leader"] is None


async def test_before_any_node_arrives_there_is_only_the_empty_overflow_pool(pools_reader: KeyClient) -> None:
    body = (await pools_reader.get(POOLS)).json()

    assert (body["version"], body["generated_at"], body["leader"]) == (0, None, None)
    assert [p["name"] for p in body["pools"]] == ["overflow"]


async def test_the_pools_answer_needs_the_pools_read_scope(nodes_reader: KeyClient) -> None:
    refused = await nodes_reader.get(POOLS)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {"required_scope": "pools:read"}
    anonymous = await AsyncClient().get(POOLS)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"


async def test_the_lease_value_is_read_even_when_the_holder_name_holds_a_bar(pools_reader: KeyClient) -> None:
    await get_redis().set(keys().pool_lease, "host|with|bars|7", px=5000)

    body = (await pools_reader.get(POOLS)).json()

    assert (body["leader"], body["leader_epoch"]) == ("host|with|bars", 7)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        point_at_redis(settings, server.url)
        yield server


async def test_with_redis_down_both_endpoints_answer_dependency_down(
    pools_reader: KeyClient, own_redis: RedisProcess
) -> None:
    own_redis.kill()

    for response in (
        await pools_reader.get(POOLS),
        await pools_reader.get(f"{POOLS}/simulate", {"src_lang": "en", "tgt_lang": "zh"}),
    ):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "DEPENDENCY_DOWN"
