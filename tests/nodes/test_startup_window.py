"""The startup window: a node that registered with its services ready is not kept out of service by one busy
sample. The real node sends its first heartbeat right after the register ack, while its machine is still busy
starting it (`cpu_percent: 100` was observed), and the next one 15 s later; that first heartbeat makes it
ready. Overload still counts as a failed check, so sustained overload degrades it as before."""

from __future__ import annotations

import httpx
import pytest

from access.models import ApiKey, Scope
from nodes import services
from nodes.simulator import Message, SimulatedNode, SimulatedNodeConfig
from tests.factories import capability_by_type, heartbeat_message, resource_usage
from tests.jobs.support import AUDIO
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)

REAL_HEARTBEAT_INTERVAL_S = 15.0
BUSY = resource_usage(cpu_percent=100.0)


@pytest.fixture
def jobs_key(transactional_db) -> str:
    return ApiKey.issue("jobs", [Scope.JOBS_WRITE, Scope.JOBS_READ])[1]


class BusyAtStart(SimulatedNode):
    """An agent-like node whose first heartbeat after registering reports a saturated CPU."""

    def build_heartbeat(self) -> Message:
        message = super().build_heartbeat()
        if not self.sent_of_type("node_heartbeat"):
            message["resource_usage"]["cpu_percent"] = 100.0
        return message


async def test_a_node_whose_first_heartbeat_is_busy_is_ready_at_once_and_takes_a_job_sent_right_away(
    start_server, node_token, jobs_key
) -> None:
    server = start_server(JOB_PENDING_TIMEOUT_S="10")
    node = BusyAtStart(
        SimulatedNodeConfig(
            url=f"{server.ws_url}/ws/node", token=node_token, processing_ms=0, heartbeat_interval_s=REAL_HEARTBEAT_INTERVAL_S
        )
    )
    await node.start()
    try:
        # Well within the node's 15 s heartbeat interval: only its first heartbeat can have done it.
        await node.wait_for(lambda: node.last_status == "ready", timeout=10)
        [heartbeat] = node.sent_of_type("node_heartbeat")
        assert heartbeat["resource_usage"]["cpu_percent"] == 100.0
        assert node.statuses[-1]["reason"] == "heartbeat_under_load"
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30) as api:
            answer = await api.post(
                "/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, params={"wait": 10}
            )
        assert answer.json()["state"] == "DONE"
    finally:
        await node.stop()


async def test_sustained_overload_still_degrades_a_node_that_started_busy(server, node_token) -> None:
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(heartbeat_message(node_id, resource_usage=BUSY))
    assert (await wire.expect("node_status"))["status"] == "ready"

    await wire.send(heartbeat_message(node_id, resource_usage=BUSY))
    await wire.send(heartbeat_message(node_id, resource_usage=BUSY))
    degraded = await wire.expect("node_status")
    assert (degraded["status"], degraded["reason"]) == ("degraded", "cpu_overloaded")
    await wire.close()


async def test_a_busy_first_heartbeat_of_a_node_whose_services_are_not_ready_leaves_it_registering(
    server, node_token
) -> None:
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    loading = [dict(cap, ready=cap["type"] != "tts") for cap in capability_by_type()]
    await wire.send(heartbeat_message(node_id, resource_usage=BUSY, capability_by_type=loading))
    await wire.send(heartbeat_message(node_id, capability_by_type=loading))
    await wire.send(heartbeat_message(node_id))  # services ready, load normal: ready now

    assert (await wire.expect("node_status"))["status"] == "ready"
    assert [frame["type"] for frame in wire.frames].count("node_status") == 1
    await wire.close()


async def test_the_default_pending_timeout_outlasts_one_real_heartbeat_interval(start_server, node_token, jobs_key) -> None:
    """A node still loading its models at its first heartbeat is ready at its second, 15 s later; a job sent
    meanwhile waits for it under the default pending timeout instead of failing NO_AVAILABLE_NODE."""
    server = start_server(NODE_HEARTBEAT_INTERVAL_S="15", NODE_HEARTBEAT_TIMEOUT_S="45", NODE_WARMUP_TIMEOUT_S="60")
    node = SimulatedNode(
        SimulatedNodeConfig(
            url=f"{server.ws_url}/ws/node", token=node_token, processing_ms=0, services_ready=False,
            heartbeat_interval_s=REAL_HEARTBEAT_INTERVAL_S,
        )
    )
    await node.start()
    try:
        await node.wait_for(lambda: len(node.sent_of_type("node_heartbeat")) == 1, timeout=5)
        assert (await services.get_node(node.node_id))["status"] == "registering"
        node.config.services_ready = True  # the models finished loading; the next heartbeat says so
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {jobs_key}"}, timeout=30
        ) as api:
            answer = await api.post(
                "/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}, params={"wait": 25}
            )
        job = answer.json()
        assert job["state"] == "DONE", job
        assert len(node.sent_of_type("node_heartbeat")) == 2
    finally:
        await node.stop()
