"""A token holds at most NODE_MAX_SOCKETS_PER_TOKEN open node sockets on an instance; past it a handshake is
refused (HTTP 403) and counted, and a closed socket frees its place."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from tests.support.metrics import scrape_url
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_token_at_its_cap_is_refused_until_one_of_its_sockets_closes(start_server, node_token):
    server = start_server(NODE_MAX_SOCKETS_PER_TOKEN="2")
    first = await Wire.connect(server.ws_url, node_token)
    second = await Wire.connect(server.ws_url, node_token)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Wire.connect(server.ws_url, node_token)
    assert refused.value.response.status_code == 403
    samples = scrape_url(server.url)
    assert samples[("scheduler_node_handshakes_rejected_total", (("reason", "token_socket_cap"),))] == 1

    await first.close()
    for _ in range(50):  # the server sees the close a moment later
        try:
            third = await Wire.connect(server.ws_url, node_token)
            break
        except websockets.InvalidStatus:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("a closed socket did not free its place")
    assert (await third.register())["node_id"].startswith("node-")
    await second.close()
    await third.close()
