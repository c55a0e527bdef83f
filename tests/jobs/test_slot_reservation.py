"""A node's slots (`node_reserve.lua`): counted from entries that expire by themselves, swept only when the
count says the node is full, and a reservation sent twice holds one slot. A node that acks holds a reserved
slot until its ack; a node that never acks (the real one) runs the job from the start, so its slot is running."""

from __future__ import annotations

import json

import pytest

from bench.jobpath import start_nodes
from core import scripts
from core.redis import get_redis, keys

pytestmark = pytest.mark.django_db(transaction=True)

TTL_MS = 38_000


async def reserve(node_id: str, slot: str) -> list:
    k = keys()
    return await scripts.run(
        "node_reserve",
        [*k.node_keys(node_id), k.node_reservations(node_id), k.node_running(node_id), k.node_unavailable(node_id)],
        [slot, TTL_MS, json.dumps(["asr", "nmt", "tts"]), json.dumps(["en", "zh"])],
    )


async def a_node(capacity: int, acks: bool = False) -> str:
    [node] = await start_nodes(1, capacity, acks=acks, name="acking" if acks else "silent")
    return node.builder.node_id


async def test_a_node_that_acks_holds_a_reserved_slot_and_one_that_never_acks_a_running_one():
    acking, silent = await a_node(capacity=2, acks=True), await a_node(capacity=2)
    client = get_redis()

    assert (await reserve(acking, "job-a#1"))[:4] == ["OK", 1, 0, 2]
    assert (await reserve(silent, "job-b#1"))[:4] == ["OK", 0, 1, 2]

    assert await client.zrange(keys().node_reservations(acking), 0, -1) == ["job-a#1"]
    assert await client.zrange(keys().node_running(silent), 0, -1) == ["job-b#1"]


async def test_a_node_full_of_expired_slots_takes_a_new_one_and_the_expired_are_gone():
    node_id = await a_node(capacity=2, acks=True)
    client = get_redis()
    # Holders that vanished long ago: their entries' expiry has passed.
    await client.zadd(keys().node_reservations(node_id), {"job-gone-1#1": 1_000})
    await client.zadd(keys().node_running(node_id), {"job-gone-2#1": 2_000})

    outcome = await reserve(node_id, "job-new#1")

    assert outcome[:4] == ["OK", 1, 0, 2]
    assert await client.zrange(keys().node_reservations(node_id), 0, -1) == ["job-new#1"]
    assert await client.zcard(keys().node_running(node_id)) == 0


async def test_a_node_with_room_is_not_swept_and_its_live_count_stays_right():
    node_id = await a_node(capacity=3, acks=True)
    client = get_redis()
    await client.zadd(keys().node_reservations(node_id), {"job-gone#1": 1_000})

    assert (await reserve(node_id, "job-new#1"))[0] == "OK"

    # The expired entry is left for the sweep that a full count would trigger; views count live entries only.
    assert await client.zcard(keys().node_reservations(node_id)) == 2
    assert await client.zcount(keys().node_reservations(node_id), "(" + str(10**12), "+inf") == 1


@pytest.mark.parametrize("acks", [True, False])
async def test_a_full_node_refuses_and_a_reservation_sent_twice_holds_one_slot(acks: bool):
    node_id = await a_node(capacity=2, acks=acks)

    def held(outcome: list) -> int:
        return outcome[1] + outcome[2]

    first = await reserve(node_id, "job-a#1")
    assert first[0] == "OK" and held(first) == 1
    assert held(await reserve(node_id, "job-a#1")) == 1
    assert held(await reserve(node_id, "job-b#1")) == 2
    # Full: a resend of a slot it holds is still OK, a new one is refused.
    assert (await reserve(node_id, "job-b#1"))[0] == "OK"
    refused = await reserve(node_id, "job-c#1")
    assert refused[0] == "FULL" and held(refused) == 2


async def test_the_reservation_returns_what_dispatch_needs_from_the_nodes_meta():
    node_id = await a_node(capacity=2)
    channel = (await get_redis().hget(keys().node_meta(node_id), "channel")) or ""

    outcome = await reserve(node_id, "job-a#1")

    acks, route, now_ms = outcome[4], outcome[5:8], int(outcome[8])
    assert acks == "0" and route == [channel, "ws", ""]
    seconds, micros = await get_redis().time()
    assert 0 <= seconds * 1000 + micros // 1000 - now_ms < 60_000


async def test_a_service_marked_unavailable_is_refused_until_its_mark_expires():
    node_id = await a_node(capacity=2)
    client = get_redis()
    seconds, _ = await client.time()
    await client.hset(keys().node_unavailable(node_id), "tts", (seconds + 60) * 1000)
    await client.hset(keys().node_meta(node_id), "unavailable_until", (seconds + 60) * 1000)

    assert await reserve(node_id, "job-a#1") == ["UNAVAILABLE", "tts"]

    await client.hset(keys().node_unavailable(node_id), "tts", (seconds - 1) * 1000)
    assert (await reserve(node_id, "job-a#1"))[0] == "OK"
