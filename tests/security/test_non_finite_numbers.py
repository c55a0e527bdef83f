"""NaN, Infinity and integers beyond 2**53 are refused where they enter, so nothing stored is served back as
JSON a strict reader rejects (a NaN in a register used to lose the node's database record)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.factories import heartbeat_message, register_message
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


def raw(message: dict, **replacements: str) -> str:
    """`message` as JSON with the values of some marker strings swapped for bare tokens like NaN."""
    text = json.dumps(message)
    for marker, token in replacements.items():
        text = text.replace(f'"{marker}"', token)
    return text


async def test_a_register_with_nan_memory_is_refused_and_nothing_is_registered(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    body = register_message(hardware={"cpu_cores": 8, "memory_gb": "@nan", "gpus": [{"name": "A", "memory_gb": 8}]})
    await wire.send(raw(body, **{"@nan": "NaN"}))
    error = await wire.expect("error")
    assert error["code"] == "BAD_MESSAGE"
    assert error["details"] == {"reason": "non_finite"}
    await wire.send(raw(body, **{"@nan": "1e400"}))
    assert (await wire.expect("error"))["details"] == {"reason": "non_finite"}
    assert not [f for f in wire.frames if f["type"] == "node_register_ack"]
    await wire.close()


async def test_a_job_result_with_nan_or_a_huge_integer_is_refused(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(heartbeat_message(node_id))
    await wire.expect("node_status")
    result = {"type": "job_result", "job_id": "job-1", "attempt_id": 1, "node_id": node_id, "success": True}
    await wire.send(raw({**result, "extra": {"x": "@nan"}}, **{"@nan": "NaN"}))
    assert (await wire.expect("error"))["details"] == {"reason": "non_finite"}
    await wire.send(raw({**result, "processing_time_ms": "@big"}, **{"@big": str(2**70)}))
    assert (await wire.expect("error"))["details"] == {"reason": "integer_range"}
    await wire.send(raw({**result, "extra": {"x": "@inf"}}, **{"@inf": "-Infinity"}))
    assert (await wire.expect("error"))["details"] == {"reason": "non_finite"}
    await wire.close()


async def test_the_node_link_and_the_rest_api_refuse_nan_with_400(server, node_token, api_key):
    body = raw(register_message(dispatch_url="http://127.0.0.1:9/", accept_public_jobs="@nan"), **{"@nan": "NaN"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        link = await client.post(
            "/api/v1/node-link/register",
            content=body,
            headers={"Authorization": f"Bearer {node_token}", "Content-Type": "application/json"},
        )
        job = await client.post(
            "/api/v1/jobs",
            content='{"src_lang": "en", "tgt_lang": "zh", "audio": "AAAA", "sample_rate": Infinity}',
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
    assert link.status_code == 400
    assert link.json()["details"] == {"reason": "non_finite"}
    assert job.status_code == 400
    assert job.json()["error"]["details"] == {"reason": "non_finite"}
