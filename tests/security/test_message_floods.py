"""Floods from one node socket: frames before registering count toward the bad-message limit (close 4400),
and heartbeats beyond a burst are dropped as RATE_LIMITED and counted. The real node's own pattern (a
heartbeat before its register is answered, one right after, one on a capability change, then one per
interval) is never throttled."""

from __future__ import annotations

import asyncio

import pytest

from tests.factories import heartbeat_message, reference_heartbeat
from tests.support.metrics import scrape_url
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_frames_before_registering_close_the_socket_with_4400_after_the_limit(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    for _ in range(100):
        try:
            await wire.send(reference_heartbeat("node-0000BEEF"))
        except Exception:
            break
    assert await wire.closed_with() == 4400
    replies = [f for f in wire.frames if f["type"] == "error"]
    assert 1 <= len(replies) <= 21  # NODE_BAD_MESSAGE_LIMIT (20) and the one that crossed it
    assert server.log_text().count('"event": "bad_message"') <= 21


async def test_a_heartbeat_flood_is_throttled_and_then_closed(start_server, node_token):
    server = start_server(NODE_HEARTBEAT_MIN_INTERVAL_S="1", NODE_HEARTBEAT_BURST="5")
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    for _ in range(60):
        try:
            await wire.send(heartbeat_message(node_id))
        except Exception:
            break
    assert await wire.closed_with() == 4400
    throttled = [f for f in wire.frames if f.get("code") == "RATE_LIMITED"]
    assert throttled
    samples = scrape_url(server.url)
    assert samples[("scheduler_node_messages_throttled_total", (("type", "node_heartbeat"),))] >= len(throttled)


async def test_the_real_nodes_heartbeat_pattern_is_never_throttled(start_server, node_token):
    # Real timings scaled down: heartbeats every 0.5 s (FAST_NODE_TIMINGS), so the limit is one per 1/30 s.
    server = start_server(NODE_HEARTBEAT_BURST="5")
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.send(reference_heartbeat("node-0000BEEF"))  # reconnecting: the old id, before the ack
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))  # right after the ack
    await wire.send(reference_heartbeat(node_id))  # a capability change at once
    for _ in range(12):  # with a fixed 1 s limit these would run the bucket dry
        await asyncio.sleep(0.5)
        await wire.send(reference_heartbeat(node_id))
    await asyncio.wait_for(await wire.ws.ping(), 5)
    await wire.expect("node_status")
    codes = [f.get("code") for f in wire.frames if f["type"] == "error"]
    assert "RATE_LIMITED" not in codes
    await wire.close()
