"""GET /api/v1/pools/simulate: a dry run of a job's selection over live nodes, with what each filter removed and
the node a job would get now, reserving nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.redis import get_redis, keys
from nodes import services
from nodes.schemas import parse_node_message
from tests.api.conftest import KeyClient
from tests.factories import SERVICE_IDS, heartbeat_message
from tests.pools.test_pool_membership import start

pytestmark = pytest.mark.django_db(transaction=True)

SIMULATE = "/api/v1/pools/simulate"
NOTHING_REMOVED = {
    "not_ready": 0, "draining": 0, "stalled": 0, "missing_service": 0, "languages_not_covered": 0, "capacity_full": 0,
}  # fmt: skip


async def fill(node_id: str) -> None:
    """Every slot of the node running a job, as node_slot.lua leaves them (members scored by their expiry)."""
    k = keys()
    slots = int(await get_redis().hget(k.node_cap(node_id), "max"))
    expiry = int(time.time() * 1000) + 60_000
    await get_redis().zadd(k.node_running(node_id), {f"job-{i}#1": expiry for i in range(slots)})


async def without_ready_semantic(node_id: str, conn: services.Connection) -> None:
    capabilities = [{"type": kind, "ready": kind != "semantic", "devices": ["gpu"]} for kind in SERVICE_IDS]
    beat = heartbeat_message(node_id, capability_by_type=capabilities)
    await services.record_heartbeat(parse_node_message(beat), conn)


async def simulate(client: KeyClient, **query: Any) -> dict[str, Any]:
    response = await client.get(SIMULATE, query)
    assert response.status_code == 200, response.content
    return response.json()


async def test_each_removed_candidate_is_counted_under_the_first_filter_it_fails_and_the_survivor_is_chosen(
    pools_reader: KeyClient, settings
) -> None:
    settings.POOL_MAX_POOLS = 1
    free, _ = await start(["en", "zh"])
    full, _ = await start(["en", "zh"])
    degraded, _ = await start(["en", "zh"])
    no_semantic, conn = await start(["en", "zh"])
    await start(["ja", "ko"])  # no room for a second pool: it lands in the overflow pool
    await fill(full)
    await get_redis().hset(keys().node_meta(degraded), "status", "degraded")
    await without_ready_semantic(no_semantic, conn)

    body = await simulate(pools_reader, src_lang="en", tgt_lang="zh", use_semantic="true")

    assert body["candidates"] == 5
    assert body["removed"] == {
        **NOTHING_REMOVED, "not_ready": 1, "missing_service": 1, "languages_not_covered": 1, "capacity_full": 1,
    }  # fmt: skip
    assert body["available"] == 1
    assert body["chosen"] == {"node_id": free, "pool": "en-zh"}
    assert body["would_fail_with"] is None
    assert body["required_services"] == ["asr", "nmt", "semantic", "tts"]
    assert [(p["name"], p["candidates"], p["available"]) for p in body["eligible_pools"]] == [
        ("en-zh", 4, 1),
        ("overflow", 1, 0),
    ]


async def test_a_drained_node_is_no_candidate_and_pinning_it_shows_the_drain(pools_reader: KeyClient) -> None:
    ready, _ = await start(["en", "zh"])
    drained, _ = await start(["en", "zh"])
    await services.drain_node(drained, "ops")

    body = await simulate(pools_reader, src_lang="en", tgt_lang="zh")
    assert (body["candidates"], body["chosen"]["node_id"]) == (1, ready)

    pinned = await simulate(pools_reader, src_lang="en", tgt_lang="zh", node_id=drained)
    assert pinned["node_id"] == drained
    assert (pinned["candidates"], pinned["removed"]["draining"], pinned["chosen"]) == (1, 1, None)
    assert pinned["would_fail_with"] == "NO_AVAILABLE_NODE"


async def test_a_pinned_node_that_can_take_the_job_is_chosen_whatever_the_others(
    pools_reader: KeyClient,
) -> None:
    await start(["en", "zh"])
    pinned, _ = await start(["en", "zh"])

    for _ in range(5):
        body = await simulate(pools_reader, src_lang="en", tgt_lang="zh", node_id=pinned)
        assert (body["candidates"], body["chosen"]) == (1, {"node_id": pinned, "pool": "en-zh"})


async def test_the_node_is_chosen_at_random_among_the_survivors_and_nothing_is_reserved(
    pools_reader: KeyClient,
) -> None:
    first, _ = await start(["en", "zh"])
    second, _ = await start(["en", "zh"])

    chosen = {
        (await simulate(pools_reader, src_lang="en", tgt_lang="zh"))["chosen"]["node_id"] for _ in range(40)
    }

    assert chosen == {first, second}
    for node_id in (first, second):
        node = await services.get_node(node_id)
        assert (node["running"], node["reserved"]) == (0, 0)


async def test_a_job_for_languages_no_pool_covers_finds_the_pool_empty(pools_reader: KeyClient) -> None:
    await start(["en", "zh"])

    body = await simulate(pools_reader, src_lang="en", tgt_lang="ja")

    assert [p["name"] for p in body["eligible_pools"]] == ["overflow"]
    assert (body["candidates"], body["chosen"], body["would_fail_with"]) == (0, None, "POOL_EMPTY")


async def test_when_every_candidate_is_full_no_node_is_available(pools_reader: KeyClient) -> None:
    for _ in range(2):
        node_id, _conn = await start(["en", "zh"])
        await fill(node_id)

    body = await simulate(pools_reader, src_lang="zh", tgt_lang="en")

    assert body["removed"] == {**NOTHING_REMOVED, "capacity_full": 2}
    assert (body["chosen"], body["would_fail_with"]) == (None, "NO_AVAILABLE_NODE")


async def test_a_pipeline_service_no_node_has_removes_every_candidate(pools_reader: KeyClient) -> None:
    await start(["en", "zh"])

    body = await simulate(pools_reader, src_lang="en", tgt_lang="zh", use_tone="true", use_tts="false")

    assert body["required_services"] == ["asr", "nmt", "tone"]
    assert body["removed"] == {**NOTHING_REMOVED, "missing_service": 1}


async def test_an_auto_source_is_narrowed_by_the_candidate_languages(pools_reader: KeyClient) -> None:
    await start(["en", "zh"])
    de_node, _ = await start(["de", "en", "zh"])

    wide = await simulate(pools_reader, src_lang="auto", tgt_lang="zh")
    narrow = await simulate(pools_reader, src_lang="auto", tgt_lang="zh", lang_a="de", lang_b="en")

    assert [p["name"] for p in wide["eligible_pools"]] == ["en-zh", "de-en-zh", "overflow"]
    assert [p["name"] for p in narrow["eligible_pools"]] == ["de-en-zh", "overflow"]
    assert narrow["chosen"]["node_id"] == de_node


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"src_lang": "EN", "tgt_lang": "zh"}, "src_lang"),
        ({"src_lang": "en", "tgt_lang": "auto"}, "tgt_lang"),
        ({"src_lang": "en"}, "tgt_lang"),
        ({"src_lang": "auto", "tgt_lang": "zh", "lang_a": "english"}, "lang_a"),
        ({"src_lang": "en", "tgt_lang": "zh", "use_asr": "maybe"}, "use_asr"),
        ({"src_lang": "en", "tgt_lang": "zh", "node_id": "no spaces"}, "node_id"),
    ],
)
async def test_an_invalid_query_is_refused_naming_the_field(
    pools_reader: KeyClient, query: dict[str, str], field: str
) -> None:
    response = await pools_reader.get(SIMULATE, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [(f["field"], f["in"]) for f in error["details"]["fields"]] == [(field, "query")]


async def test_pinning_an_unknown_node_is_not_found(pools_reader: KeyClient) -> None:
    response = await pools_reader.get(SIMULATE, {"src_lang": "en", "tgt_lang": "zh", "node_id": "node-GONE"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_the_dry_run_needs_the_pools_read_scope(nodes_reader: KeyClient) -> None:
    response = await nodes_reader.get(SIMULATE, {"src_lang": "en", "tgt_lang": "zh"})

    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"required_scope": "pools:read"}
