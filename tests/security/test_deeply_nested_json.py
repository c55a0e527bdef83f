"""JSON nested a thousand levels deep (about 2 KB) is refused as a bad message, counted toward the 4400 limit,
on the node socket, on the HTTP node link and on the REST API; it never becomes an internal error."""

from __future__ import annotations

import httpx
import pytest

from tests.support.metrics import scrape_url
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)

NESTED = "[" * 1000 + "]" * 1000
NESTED_OBJECT = '{"type": "node_heartbeat", "x": ' + "[" * 40 + "]" * 40 + "}"


async def test_a_deeply_nested_frame_gets_bad_message_and_repeats_close_with_4400(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.register()
    await wire.send(NESTED)
    error = await wire.expect("error")
    assert error["code"] == "BAD_MESSAGE"
    assert error["details"] == {"reason": "depth"}
    await wire.send(NESTED_OBJECT)  # shallow enough for Python, deeper than the 32-level limit
    assert (await wire.expect("error"))["details"] == {"reason": "depth"}
    for _ in range(25):
        await wire.send(NESTED)
    assert await wire.closed_with() == 4400

    assert not [f for f in wire.frames if f.get("code") == "INTERNAL_ERROR"]
    assert "Traceback" not in server.log_text()
    samples = scrape_url(server.url)
    assert samples[("scheduler_peer_json_rejected_total", (("reason", "depth"), ("where", "node_socket")))] >= 20


async def test_the_node_link_answers_400_bad_message_to_nested_bodies(server, node_token):
    headers = {"Authorization": f"Bearer {node_token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        register = await client.post("/api/v1/node-link/register", content=NESTED)
        messages = await client.post("/api/v1/node-link/node-00000001/messages", content=NESTED)
    for answer in (register, messages):
        assert answer.status_code == 400
        assert answer.json()["code"] == "BAD_MESSAGE"
        assert answer.json()["details"] == {"reason": "depth"}
    assert "Traceback" not in server.log_text()


async def test_the_rest_api_answers_400_naming_the_depth_to_a_nested_body(server, api_key):
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}) as client:
        answer = await client.post("/api/v1/jobs", content=NESTED, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BAD_REQUEST"
    assert answer.json()["error"]["details"] == {"reason": "depth"}
    assert "nested deeper than 32" in answer.json()["error"]["message"]
