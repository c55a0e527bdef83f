"""The node WebSocket against a real daphne process and a real Redis, speaking the real node's frames."""

from __future__ import annotations

import re

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from core import audit
from nodes import services, tokens
from tests.factories import reference_heartbeat, register_message
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_replayed_real_node_gets_an_issued_id_and_is_ready_after_one_heartbeat(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    ack = await wire.register()
    assert re.fullmatch(r"node-[0-9A-F]{8}", ack["node_id"])
    assert ack["status"] == "registering"
    assert (await services.get_node(ack["node_id"]))["status"] == "registering"

    await wire.send(reference_heartbeat(ack["node_id"]))
    status = await wire.expect("node_status")
    assert status == {"type": "node_status", "node_id": ack["node_id"], "status": "ready", "reason": "heartbeat"}
    node = await services.get_node(ack["node_id"])
    assert node["status"] == "ready"
    assert node["pool"] == "en-zh"
    assert node["max_concurrent_jobs"] == 4
    assert node["connected_instance"]
    await wire.close()


async def test_the_token_may_also_come_as_a_bearer_header(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token, header=True)
    ack = await wire.register()
    assert ack["node_id"].startswith("node-")
    await wire.close()


async def test_schema_version_one_is_refused_with_invalid_capability_schema(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.send({**register_message(), "capability_schema_version": "1.0"})
    error = await wire.expect("error")
    assert error["code"] == "INVALID_CAPABILITY_SCHEMA"
    assert await services.list_nodes() == []
    await wire.close()


async def test_a_node_without_gpu_is_refused_with_no_gpu_available(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    body = register_message()
    body["hardware"] = {"cpu_cores": 8, "memory_gb": 16}
    await wire.send(body)
    assert (await wire.expect("error"))["code"] == "NO_GPU_AVAILABLE"
    await wire.close()


@pytest.mark.parametrize("credential", [None, "garbage", "nt_000000000000.wrong-secret"])
async def test_a_missing_or_bad_token_is_refused_at_the_handshake(server, credential):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Wire.connect(server.ws_url, credential)
    assert refused.value.response.status_code == 403


async def test_a_revoked_token_is_refused_at_the_handshake(server, issue_token):
    token = await issue_token("soon revoked")
    await tokens.revoke_token(token.partition(".")[0], "tester")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Wire.connect(server.ws_url, token)
    assert refused.value.response.status_code == 403


async def test_revoking_a_token_closes_its_live_sockets(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.register()
    await tokens.revoke_token(node_token.partition(".")[0], "tester")
    assert await wire.closed_with() == services.CLOSE_TOKEN_REVOKED


async def test_another_tokens_node_id_is_refused_with_node_id_conflict(server, issue_token):
    first = await Wire.connect(server.ws_url, await issue_token("first"))
    node_id = (await first.register())["node_id"]
    intruder = await Wire.connect(server.ws_url, await issue_token("second"))
    await intruder.send({**register_message(), "node_id": node_id})
    error = await intruder.expect("error")
    assert error["code"] == "NODE_ID_CONFLICT"
    node = await services.get_node(node_id)
    assert node["status"] == "registering"
    await first.close()
    await intruder.close()


async def test_a_token_bound_to_a_node_id_gives_that_id_and_refuses_others(server, issue_token):
    token = await issue_token("bound", node_id="node-BOUND001")
    wire = await Wire.connect(server.ws_url, token)
    assert (await wire.register())["node_id"] == "node-BOUND001"
    other = await Wire.connect(server.ws_url, token)
    await other.send({**register_message(), "node_id": "node-OTHER002"})
    assert (await other.expect("error"))["code"] == "NODE_ID_CONFLICT"
    await wire.close()
    await other.close()


@pytest.mark.parametrize(
    "frame",
    ['{"type": "node_teleport"}', "{not json", b"\x00\x01binary", '{"type": "node_heartbeat"}', "[1, 2]"],
    ids=["unknown type", "invalid json", "binary frame", "missing fields", "not an object"],
)
async def test_a_bad_frame_gets_bad_message_and_the_socket_stays_open(server, node_token, frame):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(frame)
    error = await wire.expect("error")
    assert error["code"] == "BAD_MESSAGE"
    await wire.send(reference_heartbeat(node_id))
    assert (await wire.expect("node_status"))["status"] == "ready"
    await wire.close()


async def test_a_missing_field_is_named_in_the_error_details(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    body = register_message()
    del body["hardware"]
    await wire.send(body)
    error = await wire.expect("error")
    assert error["code"] == "BAD_MESSAGE"
    assert {"field": "hardware", "problem": "Field required"} in error["details"]["fields"]
    await wire.close()


async def test_unknown_service_types_and_fields_are_kept_not_refused(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    body = register_message()
    body["installed_services"].append({"service_id": "g2p", "type": "phonetic", "device": "npu", "status": "running"})
    body["future_field"] = {"anything": True}
    ack = await wire.register(**{k: v for k, v in body.items() if k != "type"})
    node = await services.get_node(ack["node_id"])
    assert {"service_id": "g2p", "type": "phonetic", "device": "npu", "status": "running"} in node["services"]
    await wire.close()


async def test_a_node_that_keeps_sending_bad_frames_is_closed_with_4400(start_server, node_token):
    server = start_server(NODE_BAD_MESSAGE_LIMIT="3")
    wire = await Wire.connect(server.ws_url, node_token)
    for _ in range(4):
        await wire.send("{broken")
    assert await wire.closed_with() == 4400


async def test_a_frame_above_the_size_limit_closes_with_1009(start_server, node_token):
    server = start_server(NODE_MAX_MESSAGE_BYTES="65536")
    wire = await Wire.connect(server.ws_url, node_token)
    await wire.register()
    await wire.send('{"type": "node_error", "message": "' + "x" * 70_000 + '"}')
    assert await wire.closed_with() == 1009


async def test_a_heartbeat_sent_before_registering_is_answered_without_closing(server, node_token):
    # The real node, reconnecting, sends a heartbeat with its old id before its register is answered (and a
    # second one if a capability changed meanwhile); a flood of them is closed (test_pre_registration_flood).
    wire = await Wire.connect(server.ws_url, node_token)
    for _ in range(2):
        await wire.send(reference_heartbeat("node-0000BEEF"))
    assert (await wire.expect("error"))["details"] == {"reason": "not_registered"}
    ack = await wire.register()
    await wire.send(reference_heartbeat(ack["node_id"]))
    assert (await wire.expect("node_status"))["status"] == "ready"
    await wire.close()


async def test_the_replayed_node_is_ready_in_the_rest_api_and_in_the_admin(server, node_token, api_key, admin_login):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))
    await wire.expect("node_status")

    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}) as rest:
        answer = (await rest.get(f"/api/v1/nodes/{node_id}")).json()
    assert answer["status"] == "ready"
    assert answer["pool"] == "en-zh"
    assert "token_id" not in answer

    await database_sync_to_async(audit.drain)()  # the beat task's job: mirror the node into the database
    async with httpx.AsyncClient(base_url=server.url, cookies=admin_login) as browser:
        page = (await browser.get("/admin/nodes/node/")).text
    assert node_id in page
    assert re.findall(r'<td class="field-status_now"><span class="status status-(\w+)"', page) == ["ready"]
    await wire.close()
