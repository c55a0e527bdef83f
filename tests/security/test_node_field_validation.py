"""Every node field is bounded: memory and CPU ranges, GPUs that are GPUs, strings no longer than the columns
they are stored in. Refusals name the field, on the socket and on the HTTP link. (A malformed node id, empty
included, is a registration refusal: tests/nodes/test_registration_refusal_closes_the_socket.py.)"""

from __future__ import annotations

import httpx
import pytest

from nodes import services
from tests.factories import heartbeat_message, register_message, resource_usage
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)

GPU = {"name": "RTX 4090", "memory_gb": 24}
REFUSED_REGISTERS = {
    "hardware.memory_gb": {"hardware": {"cpu_cores": 8, "memory_gb": -1, "gpus": [GPU]}},
    "hardware.cpu_cores": {"hardware": {"cpu_cores": 10**9, "memory_gb": 64, "gpus": [GPU]}},
    "hardware.gpus.0.name": {"hardware": {"cpu_cores": 8, "memory_gb": 64, "gpus": [{}]}},
    "version": {"version": "v" * 70_000},
    "platform": {"platform": "p" * 33},
    "installed_services.0.service_id": {
        "installed_services": [{"service_id": "s" * 70_000, "type": "asr", "device": "gpu", "status": "running"}]
    },
}


def refused_fields(error: dict) -> set[str]:
    assert error["code"] == "BAD_MESSAGE", error
    return {item["field"] for item in error["details"]["fields"]}


async def test_each_out_of_range_register_field_is_refused_by_name_on_the_socket(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    for field, overrides in REFUSED_REGISTERS.items():
        await wire.send(register_message(**overrides))
        assert field in refused_fields(await wire.expect("error")), field
    assert await services.list_nodes() == []
    # The real node's register is still taken on the same socket.
    assert (await wire.register())["node_id"].startswith("node-")
    await wire.close()


async def test_out_of_range_heartbeat_numbers_are_refused(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(heartbeat_message(node_id, resource_usage=resource_usage(cpu_percent=-5)))
    assert "resource_usage.cpu_percent" in refused_fields(await wire.expect("error"))
    await wire.send(heartbeat_message(node_id, resource_usage=resource_usage(running_jobs=-1)))
    assert "resource_usage.running_jobs" in refused_fields(await wire.expect("error"))
    await wire.send(heartbeat_message(node_id))
    assert (await wire.expect("node_status"))["status"] == "ready"
    await wire.close()


async def test_the_http_link_applies_the_same_bounds(server, node_token):
    headers = {"Authorization": f"Bearer {node_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        for field, overrides in REFUSED_REGISTERS.items():
            body = register_message(dispatch_url="http://127.0.0.1:9/", **overrides)
            answer = await client.post("/api/v1/node-link/register", json=body)
            assert answer.status_code == 400, (field, answer.text)
            assert field in refused_fields(answer.json()), field
        bad_url = await client.post(
            "/api/v1/node-link/register", json=register_message(dispatch_url="http://:80/")
        )
        empty_id = await client.post(
            "/api/v1/node-link/register", json=register_message(dispatch_url="http://127.0.0.1:9/", node_id="")
        )
    assert bad_url.status_code == 400
    assert empty_id.status_code == 400, empty_id.text
    assert empty_id.json()["code"] == "BAD_MESSAGE"
    assert empty_id.json()["details"] == {"field": "node_id"}
    assert await services.list_nodes() == []
