"""Helpers of the job tests: a ready node over a real socket, its answers, the capacity it holds."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from core.redis import get_redis, keys
from nodes.simulator import Fleet, SimulatedNodeConfig
from tests.factories import heartbeat_message
from tests.support.wire import Wire

AUDIO = base64.b64encode(b"\x03\x00abc" * 10).decode()
REQUIRED_ASSIGN_FIELDS = {
    "job_id", "attempt_id", "session_id", "utterance_index", "src_lang", "tgt_lang", "pipeline", "audio",
    "audio_format", "sample_rate", "trace_id",
}  # fmt: skip


async def ready_node(server, token: str, **register_overrides) -> tuple[Wire, str]:
    wire = await Wire.connect(server.ws_url, token)
    node_id = (await wire.register(**register_overrides))["node_id"]
    await wire.send(heartbeat_message(node_id))
    await wire.expect("node_status")
    return wire, node_id


def result_for(assign: dict, node_id: str, **overrides) -> dict:
    message = {
        "type": "job_result", "job_id": assign["job_id"], "attempt_id": assign["attempt_id"], "node_id": node_id,
        "session_id": assign["session_id"], "utterance_index": assign["utterance_index"], "success": True,
        "text_asr": "今天天气很好", "text_translated": "The weather is nice today",
        "tts_audio": base64.b64encode(b"opus").decode(), "tts_format": "opus", "processing_time_ms": 12,
        "trace_id": assign["trace_id"],
    }  # fmt: skip
    message.update(overrides)
    return message


async def capacity_in_use(node_id: str) -> int:
    k = keys()
    client = get_redis()
    return await client.zcard(k.node_reservations(node_id)) + await client.zcard(k.node_running(node_id))




@asynccontextmanager
async def ready_fleet(ws_url: str, token: str, count: int, **config: Any) -> AsyncIterator[Fleet]:
    """`count` simulated nodes that answer jobs, registered and `ready` before the block runs."""
    fleet = Fleet.uniform(count, SimulatedNodeConfig(url=f"{ws_url}/ws/node", token=token, **config))
    await fleet.start()
    try:
        await fleet.wait_until_registered(timeout=10)
        for node in fleet.nodes:
            await node.send_heartbeat()
        await fleet.wait_until_status("ready", timeout=10)
        yield fleet
    finally:
        await fleet.stop()
