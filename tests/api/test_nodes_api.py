"""The operators' node endpoints, against nodes registered through the HTTP node link."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from core.redis import get_redis, keys
from tests.api.conftest import DispatchReceiver, HttpNode, KeyClient, bearer

pytestmark = pytest.mark.django_db(transaction=True)

NODES = "/api/v1/nodes"
LIVE_VIEW_FIELDS = {
    "node_id", "status", "pool", "languages", "services", "max_concurrent_jobs", "running", "reserved",
    "last_heartbeat_at", "connected_instance", "resource_usage",
}  # fmt: skip


@pytest.fixture
async def operator(issue_key) -> KeyClient:
    return KeyClient(await issue_key("nodes:read", "nodes:write"))


async def audit_entries(kind: str) -> list[dict]:
    entries = await get_redis().xrange(keys().audit_stream)
    data = [json.loads(fields["data"]) for _, fields in entries]
    return [entry for entry in data if entry.get("kind") == kind]


async def test_the_list_shows_a_node_with_protocols_live_view_fields_and_never_its_token_or_channel(
    operator: KeyClient, http_node: HttpNode
) -> None:
    node_id = await http_node.become_ready()

    response = await operator.get(NODES)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    node = body["nodes"][0]
    assert set(node) >= LIVE_VIEW_FIELDS
    assert not {"token_id", "channel"} & set(node)
    assert node["node_id"] == node_id
    assert node["status"] == "ready"
    assert node["pool"] == "en-zh"
    assert node["languages"] == ["en", "zh"]
    assert {s["type"] for s in node["services"]} == {"asr", "nmt", "tts", "semantic"}
    assert node["max_concurrent_jobs"] == 4
    assert (node["running"], node["reserved"]) == (0, 0)
    assert node["last_heartbeat_at"] is not None
    assert node["connected_instance"]
    assert node["resource_usage"]["cpu_percent"] == 23.5
    assert node["transport"] == "http"


async def test_the_list_filters_by_status_and_pool(operator: KeyClient, http_node: HttpNode) -> None:
    await http_node.become_ready()

    async def count(query: str) -> int:
        response = await operator.get(f"{NODES}?{query}")
        assert response.status_code == 200
        return response.json()["count"]

    assert await count("status=ready") == 1
    assert await count("status=draining") == 0
    assert await count("pool=en-zh") == 1
    assert await count("pool=de-en") == 0
    assert await count("status=ready&pool=en-zh") == 1


async def test_a_node_is_shown_by_its_id(operator: KeyClient, http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await operator.get(f"{NODES}/{node_id}")

    assert response.status_code == 200
    assert response.json()["node_id"] == node_id
    assert "token_id" not in response.json()


async def test_an_unknown_node_is_404(operator: KeyClient) -> None:
    response = await operator.get(f"{NODES}/node-00000000")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_drain_marks_the_node_draining_tells_the_node_and_records_the_key_as_actor(
    operator: KeyClient, http_node: HttpNode, receiver: DispatchReceiver, issue_key
) -> None:
    node_id = await http_node.become_ready()
    key = await issue_key("nodes:write")

    response = await AsyncClient().post(
        f"{NODES}/{node_id}/drain",
        {"reason": "GPU swap"},
        content_type="application/json",
        headers=bearer(key),
    )

    assert response.status_code == 200
    actor = f"apikey:{key.partition('.')[0]}"
    assert response.json()["status"] == "draining"
    assert response.json()["health"] == "ready"
    assert response.json()["drained_by"] == actor
    control = await receiver.wait_for(lambda f: f["type"] == "node_control")
    assert control == {"type": "node_control", "command": "drain", "reason": "GPU swap"}
    [drained] = await audit_entries("drained")
    assert (drained["actor"], drained["reason"], drained["node_id"]) == (actor, "GPU swap", node_id)


async def test_undrain_returns_the_node_to_ready(
    operator: KeyClient, http_node: HttpNode, receiver: DispatchReceiver
) -> None:
    node_id = await http_node.become_ready()
    await operator.post(f"{NODES}/{node_id}/drain", content_type="application/json")

    response = await operator.post(f"{NODES}/{node_id}/undrain", content_type="application/json")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["drained_by"] == ""
    await receiver.wait_for(lambda f: f == {"type": "node_control", "command": "undrain"})


async def test_a_drained_node_stays_draining_through_heartbeats(
    operator: KeyClient, http_node: HttpNode
) -> None:
    node_id = await http_node.become_ready()
    await operator.post(f"{NODES}/{node_id}/drain", content_type="application/json")

    heartbeat = await http_node.heartbeat()

    assert heartbeat.json()["status"] == "draining"
    assert (await operator.get(f"{NODES}?status=draining")).json()["count"] == 1


async def test_drain_needs_no_body(operator: KeyClient, http_node: HttpNode) -> None:
    node_id = await http_node.become_ready()

    response = await operator.post(f"{NODES}/{node_id}/drain", content_type="application/json", data="")

    assert response.status_code == 200
    assert response.json()["status"] == "draining"


async def test_draining_or_undraining_an_unknown_node_is_404(operator: KeyClient) -> None:
    for action in ("drain", "undrain"):
        response = await operator.post(f"{NODES}/node-00000000/{action}", content_type="application/json")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
