"""Nodes join the pool of their language set as they register, heartbeat, drain and go offline."""

from __future__ import annotations

import pytest

from core.redis import get_redis, keys
from nodes import services
from nodes.registration import register_node
from nodes.schemas import parse_node_message
from pools import services as pools
from pools.eligibility import OVERFLOW
from tests.factories import capability_by_type, heartbeat_message, language_capabilities, register_message

pytestmark = pytest.mark.django_db(transaction=True)


async def start(languages: list[str]) -> tuple[str, services.Connection]:
    conn = services.Connection(token=None)
    message = register_message(language_capabilities=language_capabilities(languages))
    registration = await register_node(parse_node_message(message), conn)
    beat = heartbeat_message(registration.node_id, language_capabilities=language_capabilities(languages))
    await services.record_heartbeat(parse_node_message(beat), conn)
    return registration.node_id, conn


async def members(name: str) -> set[str]:
    return await get_redis().smembers(keys().pool_members(name))


async def test_nodes_of_en_zh_en_zh_and_de_en_zh_make_two_pools_of_two_and_one():
    a, _ = await start(["en", "zh"])
    b, _ = await start(["zh", "en"])
    c, _ = await start(["de", "en", "zh"])

    config = await pools.current_config()
    assert sorted((p.name, p.languages) for p in config.pools) == [("de-en-zh", ("de", "en", "zh")), ("en-zh", ("en", "zh"))]
    assert len({p.pool_id for p in config.pools}) == 2
    assert await members("en-zh") == {a, b}
    assert await members("de-en-zh") == {c}
    sizes = (await pools.pool_sizes())["en-zh"]
    assert (sizes["size"], sizes["ready"], sizes["reserved"], sizes["running"]) == (2, 2, 0, 0)


async def test_each_dynamic_creation_bumps_the_version_once():
    await start(["en", "zh"])
    first = (await pools.current_config()).version
    await start(["en", "zh"])
    assert (await pools.current_config()).version == first
    await start(["en", "ja"])
    assert (await pools.current_config()).version == first + 1


async def test_a_drained_or_offline_node_leaves_its_pool_and_an_undrained_one_returns():
    node_id, conn = await start(["en", "zh"])
    await services.drain_node(node_id, "ops")
    assert await members("en-zh") == set()
    await services.undrain_node(node_id, "ops")
    assert await members("en-zh") == {node_id}
    await services.node_disconnected(node_id, conn, "socket_closed_1000")
    assert await members("en-zh") == set()


async def test_a_heartbeat_that_changes_languages_moves_the_node():
    node_id, conn = await start(["en", "zh"])
    beat = heartbeat_message(node_id, language_capabilities=language_capabilities(["en", "ja", "zh"]))
    await services.record_heartbeat(parse_node_message(beat), conn)
    assert await members("en-zh") == set()
    assert await members("en-ja-zh") == {node_id}


async def test_a_node_whose_core_services_stop_leaves_its_pool():
    node_id, conn = await start(["en", "zh"])
    beat = heartbeat_message(node_id, capability_by_type=capability_by_type(ready=False))
    await services.record_heartbeat(parse_node_message(beat), conn)
    assert await members("en-zh") == set()


async def test_past_max_pools_a_node_of_a_new_set_lands_in_the_overflow_pool(settings):
    settings.POOL_MAX_POOLS = 1
    await start(["en", "zh"])
    stranded, _ = await start(["ja", "ko"])
    assert [p.name for p in (await pools.current_config()).pools] == ["en-zh"]
    assert await members(OVERFLOW) == {stranded}
    node = await services.get_node(stranded)
    assert node["pool"] == OVERFLOW
