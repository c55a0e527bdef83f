"""A refused registration (`NO_GPU_AVAILABLE`, `INVALID_CAPABILITY_SCHEMA`, `NODE_ID_CONFLICT`...) gets its
`error` frame and then the socket is closed with 4422: the real node ignores
the frame and would otherwise stay connected and useless; after the close its reconnect backoff applies.
Each refusal is a node event, a metric and a log line. A registered socket is never closed for a refused
re-registration."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from core import audit
from nodes.consumers import CLOSE_REGISTRATION_REFUSED
from nodes.models import NodeEvent
from nodes.simulator import SimulatedNode, SimulatedNodeConfig
from tests.factories import heartbeat_message, register_message
from tests.support.metrics import scrape_url
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_node_without_gpu_is_closed_with_4422_and_reconnects_with_its_backoff(server, node_token) -> None:
    registrations = ("scheduler_node_registrations_total", (("result", "NO_GPU_AVAILABLE"),))
    before = scrape_url(server.url).get(registrations, 0.0)
    node = SimulatedNode(
        SimulatedNodeConfig(url=f"{server.ws_url}/ws/node", token=node_token, gpu=False, reconnect_initial_s=0.2)
    )
    await node.start()
    try:
        await node.wait_for(lambda: len(node.close_codes) >= 2, timeout=10)
    finally:
        await node.stop()

    assert node.close_codes[:2] == [CLOSE_REGISTRATION_REFUSED, CLOSE_REGISTRATION_REFUSED]
    assert [error["code"] for error in node.errors[:2]] == ["NO_GPU_AVAILABLE", "NO_GPU_AVAILABLE"]
    assert node.node_id is None
    assert node.sent_of_type("node_heartbeat") == []
    assert scrape_url(server.url)[registrations] >= before + 2
    assert server.log_text().count('"event": "node_rejected"') >= 2
    await database_sync_to_async(audit.drain)()
    refusals = NodeEvent.objects.filter(kind=NodeEvent.Kind.REJECTED, reason="NO_GPU_AVAILABLE")
    assert await refusals.acount() >= 2


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"capability_schema_version": "1.0"}, "INVALID_CAPABILITY_SCHEMA"),
        ({"node_id": "node-{BRACES}"}, "BAD_MESSAGE"),
        # Empty is malformed too, not a request for a new id: the same refusal and close as any bad id.
        ({"node_id": ""}, "BAD_MESSAGE"),
    ],
)
async def test_every_registration_refusal_closes_with_4422_and_names_its_code(
    server, node_token, overrides: dict, code: str
) -> None:
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.send({**register_message(), **overrides})

    assert (await wire.expect("error"))["code"] == code
    assert await wire.closed_with() == CLOSE_REGISTRATION_REFUSED


async def test_a_node_id_conflict_closes_the_intruder_and_leaves_the_owner_connected(server, issue_token) -> None:
    owner = await Wire.connect(server.ws_url, await issue_token("owner"))
    node_id = (await owner.register())["node_id"]
    intruder = await Wire.connect(server.ws_url, await issue_token("intruder"))
    await intruder.send({**register_message(), "node_id": node_id})

    assert (await intruder.expect("error"))["code"] == "NODE_ID_CONFLICT"
    assert await intruder.closed_with() == CLOSE_REGISTRATION_REFUSED
    await owner.send(heartbeat_message(node_id))
    assert (await owner.expect("node_status"))["status"] == "ready"
    await owner.close()


async def test_a_refused_re_registration_leaves_a_registered_socket_open(server, node_token) -> None:
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send({**register_message(), "node_id": node_id, "capability_schema_version": "1.0"})
    assert (await wire.expect("error"))["code"] == "INVALID_CAPABILITY_SCHEMA"

    await wire.send(heartbeat_message(node_id))
    assert (await wire.expect("node_status"))["status"] == "ready"
    await wire.close()
