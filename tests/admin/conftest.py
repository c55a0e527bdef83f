"""Live nodes for admin tests: registered and heartbeated through the real services against the test's Redis,
with the audit trail written so their Node rows exist."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.layers import get_channel_layer

from core import audit
from core.redis import run_sync
from nodes import services
from nodes.registration import register_node
from nodes.schemas import NodeHeartbeat, NodeRegister
from nodes.services import Connection, TokenInfo
from tests.factories import heartbeat_message, register_message
from tests.jobs.conftest import jobs_key, start_job_server  # noqa: F401  (shared fixtures)
from tests.nodes.conftest import issue_token, node_token  # noqa: F401


@dataclass
class LiveNode:
    node_id: str
    conn: Connection


def start_node(
    node_id: str, *, token: TokenInfo | None = None, channel: str = "", ready: bool = True, **register: Any
) -> LiveNode:
    """Register `node_id` (and heartbeat it to `ready`), then write the audit trail to the database."""
    conn = Connection(token=token, channel=channel)
    message = NodeRegister.model_validate(register_message(node_id=node_id, **register))
    registration = run_sync(register_node, message, conn)
    if ready:
        heartbeat = NodeHeartbeat.model_validate(heartbeat_message(registration.node_id))
        outcome = run_sync(services.record_heartbeat, heartbeat, conn)
        assert outcome.status == "ready", outcome
    audit.drain()
    return LiveNode(registration.node_id, conn)


@pytest.fixture
def live_node(transactional_db: None) -> Callable[..., LiveNode]:
    return start_node


def new_channel() -> str:
    """A channel name on the real channel layer, standing in for a node socket held by some instance."""
    return run_sync(get_channel_layer().new_channel)


def next_message(channel: str, message_type: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of `message_type` sent to `channel`, skipping frames sent before it."""

    async def receive() -> dict[str, Any]:
        layer = get_channel_layer()
        while True:
            message = await asyncio.wait_for(layer.receive(channel), timeout)
            if message["type"] == message_type:
                return message

    return run_sync(receive)


def column(html: str, field: str) -> list[str]:
    """The texts of every cell of one admin column (changelist or inline), in page order."""
    cells = re.findall(rf'<td class="field-{field}">(.*?)</td>', html, re.S)
    return [re.sub(r"</?p>", "", cell).strip() for cell in cells]
