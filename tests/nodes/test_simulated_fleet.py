"""The fleet simulator against a real server: what a new user sees after `simulate_nodes --count 20`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from nodes import services
from nodes.simulator import Fleet, SimulatedNodeConfig

pytestmark = pytest.mark.django_db(transaction=True)


async def test_twenty_simulated_nodes_register_and_all_become_ready(server, node_token):
    # A handshake refused under machine load is retried after 0.5 s instead of the real node's 5 s.
    base = SimulatedNodeConfig(
        url=f"{server.ws_url}/ws/node", token=node_token, heartbeat_interval_s=0.5, reconnect_initial_s=0.5
    )
    fleet = Fleet.uniform(20, base, language_sets=[["en", "zh"], ["de", "en", "zh"]])
    await fleet.start()
    try:
        await fleet.wait_until_registered(timeout=20)
        # The nodes hear `node_status` a moment after Redis says ready: wait for both views.
        for _ in range(200):
            nodes = await services.list_nodes()
            if len(nodes) == 20 and all(n["status"] == "ready" for n in nodes) and fleet.status_counts() == {"ready": 20}:
                break
            await asyncio.sleep(0.1)
        assert len(nodes) == 20
        assert {n["status"] for n in nodes} == {"ready"}
        assert sorted({n["pool"] for n in nodes}) == ["de-en-zh", "en-zh"]
        assert fleet.status_counts() == {"ready": 20}
    finally:
        await fleet.stop()


async def test_a_simulated_node_reconnects_with_its_id_after_its_server_restarts(start_server, node_token):
    server = start_server()
    base = SimulatedNodeConfig(
        url=f"{server.ws_url}/ws/node", token=node_token, heartbeat_interval_s=0.5, reconnect_initial_s=0.2
    )
    fleet = Fleet.uniform(1, base)
    node = fleet.nodes[0]
    await fleet.start()
    try:
        await fleet.wait_until_registered(timeout=5)
        first_id = node.node_id
        server.kill()
        replacement = start_server()
        node.config.url = f"{replacement.ws_url}/ws/node"
        await node.wait_for(lambda: node.connections >= 2 and node.is_registered, timeout=10)
        assert node.node_id == first_id
        assert [ack["node_id"] for ack in node.register_acks] == [first_id, first_id]
        assert node.sent_of_type("node_register")[1]["node_id"] == first_id
    finally:
        await fleet.stop()


def test_the_simulate_nodes_command_stops_cleanly_on_ctrl_c(server, node_token, server_env):
    command = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_nodes", "--count", "3", "--url", f"{server.ws_url}/ws/node",
         "--token", node_token, "--heartbeat-interval", "0.5", "--status-interval", "0.5"],
        env={**os.environ, **server_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in command.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "registered 3/3" in line:
                break
        command.send_signal(signal.SIGINT)
        output, _ = command.communicate(timeout=15)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0
    text = "".join(lines) + output
    assert node_token.partition(".")[2] not in text
