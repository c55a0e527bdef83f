"""A frame for a socket that closed meanwhile is lost, and says so, instead of failing whoever sent it.

Frames reach a node's socket from other coroutines (a dispatch, a status change, a newer connection of the
same node closing the old one). uvicorn raises `ClientDisconnected` (an OSError) on a send after the client
went away, which the consumer used to let through: the sender then failed as if Redis were down.
"""

from __future__ import annotations

import pytest

from jobs import placement
from nodes import connections
from nodes.consumers import NodeConsumer


class ClientDisconnected(OSError):
    """What uvicorn raises on a send to a closed WebSocket."""


@pytest.fixture
def closed_socket(monkeypatch: pytest.MonkeyPatch):
    consumer = NodeConsumer()
    consumer.node_id = "node-0000CAFE"

    async def send(*_args, **_kwargs):
        raise ClientDisconnected()

    monkeypatch.setattr(consumer, "send", send)
    monkeypatch.setitem(connections.LOCAL, "specific.test!closed", consumer)
    return consumer


async def test_the_consumer_reports_the_frame_as_not_sent(closed_socket) -> None:
    assert await closed_socket.send_frame({"type": "node_status", "status": "ready"}) is False


async def test_a_local_send_to_it_is_not_delivered_and_raises_nothing(closed_socket) -> None:
    assert await connections.send_frame("specific.test!closed", {"type": "node_control", "command": "drain"}) is False


async def test_a_job_assign_to_it_counts_as_not_delivered(closed_socket) -> None:
    route = ["specific.test!closed", "ws", ""]
    assert await placement.deliver(route, {"type": "job_assign", "job_id": "job-1"}) is False
