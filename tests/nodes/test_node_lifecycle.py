"""Reconnects, offline detection, health and drain, against real server processes and a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from core import audit
from nodes import services
from nodes.models import NodeEvent
from tests.factories import reference_heartbeat
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_for_status(node_id: str, status: str, timeout: float) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        node = await services.get_node(node_id)
        if node and node["status"] == status:
            return node
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{node_id} not {status} within {timeout} s: {node}")
        await asyncio.sleep(0.05)


async def test_reconnecting_with_the_same_id_leaves_one_node_and_closes_the_older_socket_with_4409(server, node_token):
    old = await Wire.connect(server.ws_url, node_token)
    node_id = (await old.register())["node_id"]
    new = await Wire.connect(server.ws_url, node_token)
    assert (await new.register(node_id=node_id))["node_id"] == node_id

    assert await old.closed_with() == 4409
    nodes = await services.list_nodes()
    assert [n["node_id"] for n in nodes] == [node_id]
    # The older socket's close must not take the node offline: the newer one owns it.
    await new.send(reference_heartbeat(node_id))
    assert (await new.expect("node_status"))["status"] == "ready"
    await new.close()


async def test_the_newer_socket_wins_across_two_instances(start_server, node_token):
    first, second = start_server(), start_server()
    old = await Wire.connect(first.ws_url, node_token)
    node_id = (await old.register())["node_id"]
    new = await Wire.connect(second.ws_url, node_token)
    await new.register(node_id=node_id)
    assert await old.closed_with() == 4409
    assert len(await services.list_nodes()) == 1
    await new.close()


async def test_a_closed_socket_makes_the_node_offline_at_once(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.close()
    node = await wait_for_status(node_id, "offline", timeout=2)
    assert node["connected_instance"] == ""


async def test_a_node_is_offline_after_the_heartbeat_timeout_even_when_its_server_was_killed(start_server, node_token):
    holder, survivor = start_server(), start_server()
    wire = await Wire.connect(holder.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))
    await wire.expect("node_status")
    holder.kill()  # SIGKILL: no disconnect handler runs anywhere

    node = await services.get_node(node_id)
    assert node["status"] == "ready"
    # Timeout 1.5 s in tests; the surviving instance's sweep (every 0.2 s) must notice.
    await wait_for_status(node_id, "offline", timeout=1.5 + 1.5)
    assert survivor.is_running()


async def test_a_node_that_misses_heartbeats_goes_offline_by_the_beat_sweep_alone(redis_url, node_token, start_server):
    holder = start_server()
    wire = await Wire.connect(holder.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    holder.kill()
    await asyncio.sleep(1.6)
    # No instance is left: the Celery task body is what fires the deadline.
    from nodes.tasks import sweep_deadlines

    await database_sync_to_async(sweep_deadlines)()
    assert (await services.get_node(node_id))["status"] == "offline"


async def test_health_degrades_after_three_failed_checks_and_recovers_on_a_good_heartbeat(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))
    assert (await wire.expect("node_status"))["status"] == "ready"

    broken = [{"type": "asr", "ready": False}, {"type": "nmt", "ready": True}, {"type": "tts", "ready": True}]
    for _ in range(2):
        await wire.send(reference_heartbeat(node_id, capability_by_type=broken))
    await asyncio.sleep(0.2)
    assert (await services.get_node(node_id))["status"] == "ready"
    await wire.send(reference_heartbeat(node_id, capability_by_type=broken))
    degraded = await wire.expect("node_status")
    assert degraded["status"] == "degraded"
    assert degraded["reason"] == "asr_not_ready"

    await wire.send(reference_heartbeat(node_id))
    assert (await wire.expect("node_status"))["status"] == "ready"
    await wire.close()


async def test_three_failures_among_the_last_five_checks_degrade_a_node(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    hot = {"cpu_percent": 99.0, "gpu_percent": 10.0, "mem_percent": 10.0, "running_jobs": 0}
    good = reference_heartbeat(node_id)
    bad = reference_heartbeat(node_id, resource_usage=hot)
    for message in (good, bad, good, bad):
        await wire.send(message)
    await asyncio.sleep(0.3)
    assert (await services.get_node(node_id))["status"] == "ready"
    await wire.send(bad)
    status = await wire.expect("node_status", timeout=3)  # the first is registering -> ready
    if status["status"] == "ready":
        status = await wire.expect("node_status")
    assert status == {"type": "node_status", "node_id": node_id, "status": "degraded", "reason": "cpu_overloaded"}
    await wire.close()


async def test_a_node_not_ready_within_the_warmup_time_becomes_degraded(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    not_ready = [{"type": "asr", "ready": False}]
    # Keep it alive but never healthy: after the 2 s warm-up it is degraded.
    for _ in range(6):
        await wire.send(reference_heartbeat(node_id, capability_by_type=not_ready))
        await asyncio.sleep(0.4)
    status = await wire.expect("node_status")
    assert status["status"] == "degraded"
    assert status["reason"] == "warmup_timeout"
    await wire.close()


async def test_a_drained_node_is_not_ready_and_its_history_shows_who_drained_it(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await wire.send(reference_heartbeat(node_id))
    await wire.expect("node_status")

    assert await services.drain_node(node_id, "alice", "GPU swap") == "draining"
    control = await wire.expect("node_control")
    assert control == {"type": "node_control", "command": "drain", "reason": "GPU swap"}
    assert (await wire.expect("node_status"))["status"] == "draining"
    # Heartbeats keep it draining: the operator's flag outlives health changes.
    await wire.send(reference_heartbeat(node_id))
    await asyncio.sleep(0.2)
    assert (await services.get_node(node_id))["status"] == "draining"

    await database_sync_to_async(audit.drain)()
    drained = await database_sync_to_async(lambda: list(NodeEvent.objects.filter(node_id=node_id, kind="drained")))()
    assert [(e.actor, e.from_status, e.to_status, e.reason) for e in drained] == [("alice", "ready", "draining", "GPU swap")]

    assert await services.undrain_node(node_id, "bob") == "ready"
    assert (await wire.expect("node_control"))["command"] == "undrain"
    await wire.close()


async def test_a_drained_node_stays_drained_after_it_reconnects(server, node_token):
    wire = await Wire.connect(server.ws_url, node_token)
    node_id = (await wire.register())["node_id"]
    await services.drain_node(node_id, "alice")
    await wire.close()
    again = await Wire.connect(server.ws_url, node_token)
    await again.register(node_id=node_id)
    await again.send(reference_heartbeat(node_id))
    await asyncio.sleep(0.3)
    assert (await services.get_node(node_id))["status"] == "draining"
    await again.close()
