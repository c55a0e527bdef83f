"""The simulator must put on the wire exactly what the lingua Electron node sends.

A tiny `websockets` server plays the scheduler so these tests depend neither on Django nor on the
project's own consumer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from nodes.simulator import (
    Fleet,
    SimulatedNode,
    SimulatedNodeConfig,
    reconnect_delays,
)

ISSUED_ID = "node-1A2B3C4D"
TOKEN = "tok123.s3cr3t-value"
STEP_TIMEOUT = 5.0

# PROTOCOL.md section 1, node -> scheduler.
REGISTER_REQUIRED = {
    "version",
    "platform",
    "hardware",
    "installed_models",
    "capability_by_type",
    "features_supported",
    "accept_public_jobs",
}
HEARTBEAT_REQUIRED = {"node_id", "timestamp", "resource_usage", "installed_services", "capability_by_type"}
RESOURCE_USAGE_REQUIRED = {"cpu_percent", "mem_percent", "running_jobs"}

# Exactly the keys the real client's registration handler emits (node-agent-registration.ts).
REAL_REGISTER_KEYS = {
    "type",
    "node_id",
    "version",
    "capability_schema_version",
    "platform",
    "hardware",
    "installed_models",
    "installed_services",
    "capability_by_type",
    "features_supported",
    "accept_public_jobs",
    "language_capabilities",
}
# The real heartbeat of an idle node with a running ASR service (node-agent-heartbeat.ts).
REAL_IDLE_HEARTBEAT_KEYS = {
    "type",
    "node_id",
    "timestamp",
    "resource_usage",
    "installed_services",
    "capability_by_type",
    "language_capabilities",
    "rerun_metrics",
}


@dataclass
class FakeConnection:
    ws: ServerConnection
    path: str
    headers: Headers
    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None

    async def next_message(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), STEP_TIMEOUT)

    async def next_of_type(self, message_type: str) -> dict[str, Any]:
        while True:
            message = await self.next_message()
            if message["type"] == message_type:
                return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def ack(self, node_id: str = ISSUED_ID) -> None:
        await self.send(
            {
                "type": "node_register_ack",
                "node_id": node_id,
                "message": "Node registered successfully",
                "status": "registering",
            }
        )

    def pending(self) -> list[dict[str, Any]]:
        drained = []
        while not self.messages.empty():
            drained.append(self.messages.get_nowait())
        return drained


class FakeScheduler:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[FakeConnection] = asyncio.Queue()
        self.connection_count = 0
        self.server: Server | None = None
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        connection = FakeConnection(ws=ws, path=ws.request.path, headers=ws.request.headers)
        self.connection_count += 1
        await self.connections.put(connection)
        async for raw in ws:
            await connection.messages.put(json.loads(raw))
        connection.close_code = ws.close_code
        connection.closed.set()

    async def next_connection(self) -> FakeConnection:
        return await asyncio.wait_for(self.connections.get(), STEP_TIMEOUT)


@pytest.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    fake = FakeScheduler()
    async with serve(fake.handler, "127.0.0.1", 0, max_size=16 * 1024 * 1024) as server:
        fake.server = server
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws/node"
        yield fake


@pytest.fixture
def nodes() -> list[SimulatedNode]:
    return []


@pytest.fixture
async def make_node(nodes: list[SimulatedNode], scheduler: FakeScheduler) -> AsyncIterator[Any]:
    async def factory(**overrides: Any) -> SimulatedNode:
        settings: dict[str, Any] = {
            "url": scheduler.url,
            "token": TOKEN,
            "heartbeat_interval_s": 60.0,
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.4,
            "seed": 7,
        }
        settings.update(overrides)
        node = SimulatedNode(SimulatedNodeConfig(**settings))
        nodes.append(node)
        await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


async def registered_pair(
    make_node: Any, scheduler: FakeScheduler, **overrides: Any
) -> tuple[SimulatedNode, FakeConnection]:
    node = await make_node(**overrides)
    connection = await scheduler.next_connection()
    await connection.next_of_type("node_register")
    await connection.ack()
    await connection.next_of_type("node_heartbeat")
    return node, connection


async def test_first_registration_has_a_null_node_id_and_every_required_field(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node()
    connection = await scheduler.next_connection()

    register = await connection.next_message()

    assert register["type"] == "node_register"
    assert "node_id" in register and register["node_id"] is None
    assert register.keys() >= REGISTER_REQUIRED
    assert isinstance(register["version"], str)
    assert register["platform"] in {"windows", "linux", "macos"}
    assert {"cpu_cores", "memory_gb"} <= register["hardware"].keys()
    assert all({"name", "memory_gb"} == gpu.keys() for gpu in register["hardware"]["gpus"])
    assert register["installed_models"] == []
    assert register["features_supported"] == {}
    assert register["accept_public_jobs"] is True
    assert all({"type", "ready"} <= entry.keys() for entry in register["capability_by_type"])


async def test_registration_has_exactly_the_keys_and_shapes_of_the_real_node(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node(languages=["en", "zh"])
    connection = await scheduler.next_connection()

    register = await connection.next_message()

    assert register.keys() == REAL_REGISTER_KEYS
    assert register["version"] == "2.0.0"
    assert register["capability_schema_version"] == "2.0"
    assert register["platform"] == "linux"
    assert register["installed_services"] == [
        {"service_id": "faster-whisper-vad", "type": "asr", "device": "gpu", "status": "running"},
        {"service_id": "nmt-m2m100", "type": "nmt", "device": "gpu", "status": "running"},
        {"service_id": "piper-tts", "type": "tts", "device": "gpu", "status": "running"},
        {"service_id": "semantic-repair-en-zh", "type": "semantic", "device": "gpu", "status": "running"},
    ]
    assert register["capability_by_type"] == [
        {"type": kind, "ready": True, "devices": ["gpu"]} for kind in ("asr", "nmt", "tts", "semantic")
    ]
    assert register["language_capabilities"] == {
        "asr_languages": ["en", "zh"],
        "tts_languages": ["en", "zh"],
        "semantic_languages": ["en", "zh"],
        "semantic_core_ready": True,
    }


async def test_extension_fields_are_sent_only_when_configured(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node(max_concurrent_jobs=3, send_ack=True)
    connection = await scheduler.next_connection()

    register = await connection.next_message()

    assert register.keys() == REAL_REGISTER_KEYS | {"max_concurrent_jobs", "supports_job_ack"}
    assert register["max_concurrent_jobs"] == 3
    assert register["supports_job_ack"] is True


async def test_a_cpu_only_node_omits_gpus_and_reports_its_services_not_ready(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node(gpu=False)
    connection = await scheduler.next_connection()

    register = await connection.next_message()

    assert "gpus" not in register["hardware"]
    assert {service["device"] for service in register["installed_services"]} == {"cpu"}
    assert all(
        entry["ready"] is False and entry["devices"] == ["cpu"] for entry in register["capability_by_type"]
    )


async def test_no_heartbeat_is_sent_before_the_register_ack(make_node: Any, scheduler: FakeScheduler) -> None:
    await make_node(heartbeat_interval_s=0.05)
    connection = await scheduler.next_connection()
    await connection.next_of_type("node_register")

    await asyncio.sleep(0.3)

    assert connection.pending() == []


async def test_the_heartbeat_after_the_ack_carries_the_issued_id_and_every_required_field(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    node = await make_node()
    connection = await scheduler.next_connection()
    await connection.next_of_type("node_register")

    await connection.ack()
    heartbeat = await connection.next_message()

    assert node.node_id == ISSUED_ID
    assert node.registered.is_set()
    assert heartbeat["type"] == "node_heartbeat"
    assert heartbeat["node_id"] == ISSUED_ID
    assert heartbeat.keys() >= HEARTBEAT_REQUIRED
    assert heartbeat.keys() == REAL_IDLE_HEARTBEAT_KEYS
    assert isinstance(heartbeat["timestamp"], int) and heartbeat["timestamp"] > 1_600_000_000_000
    usage = heartbeat["resource_usage"]
    assert (
        RESOURCE_USAGE_REQUIRED
        <= usage.keys()
        <= RESOURCE_USAGE_REQUIRED
        | {
            "gpu_percent",
            "gpu_mem_percent",
            "gpu_queue_length",
        }
    )
    assert usage["running_jobs"] == 0
    assert heartbeat["rerun_metrics"] == {
        "totalReruns": 0,
        "successfulReruns": 0,
        "failedReruns": 0,
        "timeoutReruns": 0,
        "qualityImprovements": 0,
    }


async def test_heartbeats_repeat_at_the_configured_interval(make_node: Any, scheduler: FakeScheduler) -> None:
    _, connection = await registered_pair(make_node, scheduler, heartbeat_interval_s=0.1)

    second = await connection.next_of_type("node_heartbeat")
    third = await connection.next_of_type("node_heartbeat")

    assert second["node_id"] == third["node_id"] == ISSUED_ID
    assert third["timestamp"] >= second["timestamp"]


async def test_processing_metrics_appear_in_camel_case_only_after_work_was_recorded(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    node, connection = await registered_pair(make_node, scheduler)

    node.record_service_efficiency("faster-whisper-vad", 10.0)
    node.record_service_efficiency("faster-whisper-vad", 14.0)
    node.gpu_queue_length = 2
    await node.send_heartbeat()
    with_metrics = await connection.next_of_type("node_heartbeat")
    await node.send_heartbeat()
    next_window = await connection.next_of_type("node_heartbeat")

    assert with_metrics["processing_metrics"] == {"serviceEfficiencies": {"faster-whisper-vad": 12.0}}
    assert with_metrics["resource_usage"]["gpu_queue_length"] == 2
    assert "processing_metrics" not in next_window


async def test_a_job_assign_gets_no_job_ack_without_send_ack(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    node, connection = await registered_pair(make_node, scheduler)

    await connection.send(job_assign("job-1"))
    await node.wait_for(lambda: len(node.job_assigns) == 1, STEP_TIMEOUT)
    # Frames arrive in order, so everything sent before this heartbeat is already queued.
    await node.send_heartbeat()
    await connection.next_of_type("node_heartbeat")

    assert node.job_assigns[0]["job_id"] == "job-1"
    assert node.sent_of_type("job_ack") == []
    assert connection.pending() == []


async def test_send_ack_answers_a_job_assign_with_a_job_ack(make_node: Any, scheduler: FakeScheduler) -> None:
    _, connection = await registered_pair(make_node, scheduler, send_ack=True)

    await connection.send(job_assign("job-2"))
    ack = await connection.next_message()

    assert ack == {
        "type": "job_ack",
        "job_id": "job-2",
        "attempt_id": 1,
        "node_id": ISSUED_ID,
        "session_id": "s-1",
        "trace_id": "t-job-2",
    }


async def test_scheduler_frames_are_recorded_for_tests(make_node: Any, scheduler: FakeScheduler) -> None:
    node, connection = await registered_pair(make_node, scheduler)

    await connection.send({"type": "node_status", "node_id": ISSUED_ID, "status": "ready"})
    await connection.send({"type": "node_control", "command": "drain", "reason": "maintenance"})
    await connection.send({"type": "error", "code": "BAD_MESSAGE", "message": "nope"})
    await connection.send({"type": "job_cancel", "job_id": "job-9", "reason": "job_timeout"})
    await connection.send({"type": "something_new"})
    await node.wait_for(lambda: len(node.received) == 6, STEP_TIMEOUT)

    assert node.last_status == "ready"
    assert node.draining is True
    assert [error["code"] for error in node.errors] == ["BAD_MESSAGE"]
    assert [cancel["job_id"] for cancel in node.job_cancels] == ["job-9"]
    assert node.controls[0]["command"] == "drain"
    assert node.is_connected


async def test_after_the_server_closes_the_node_reconnects_and_reregisters_with_its_issued_id(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    node, first = await registered_pair(make_node, scheduler)

    await first.ws.close(code=1012, reason="restart")
    second = await scheduler.next_connection()
    register = await second.next_message()
    early_heartbeat = await second.next_message()

    assert register["type"] == "node_register"
    assert register["node_id"] == ISSUED_ID
    # The real client restarts its heartbeat on open and, already knowing its id, sends one at once.
    assert early_heartbeat["type"] == "node_heartbeat"
    assert early_heartbeat["node_id"] == ISSUED_ID
    assert node.close_codes == [1012]
    assert not node.registered.is_set()

    await second.ack()
    await node.registered.wait()
    assert (await second.next_of_type("node_heartbeat"))["node_id"] == ISSUED_ID


async def test_the_token_travels_as_a_query_parameter(make_node: Any, scheduler: FakeScheduler) -> None:
    await make_node()

    connection = await scheduler.next_connection()

    parts = urlsplit(connection.path)
    assert parts.path == "/ws/node"
    assert parse_qs(parts.query) == {"token": [TOKEN]}
    assert "Authorization" not in connection.headers


async def test_header_auth_sends_a_bearer_token_and_no_query_parameter(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node(auth="header")

    connection = await scheduler.next_connection()

    assert connection.path == "/ws/node"
    assert connection.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_the_handshake_carries_no_origin_and_no_user_agent_like_the_node_client(
    make_node: Any, scheduler: FakeScheduler
) -> None:
    await make_node()

    connection = await scheduler.next_connection()

    assert "Origin" not in connection.headers
    assert "User-Agent" not in connection.headers


async def test_stop_closes_normally_and_never_reconnects(make_node: Any, scheduler: FakeScheduler) -> None:
    node, connection = await registered_pair(make_node, scheduler)

    await node.stop()
    await asyncio.wait_for(connection.closed.wait(), STEP_TIMEOUT)
    await asyncio.sleep(0.3)

    assert connection.close_code == 1000
    assert scheduler.connection_count == 1
    assert not node.is_connected


def test_reconnect_delays_double_from_the_initial_delay_up_to_the_maximum() -> None:
    delays = reconnect_delays(5.0, 60.0)

    assert [next(delays) for _ in range(7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


async def test_a_fleet_cycles_language_sets_and_stops_every_node(scheduler: FakeScheduler) -> None:
    base = SimulatedNodeConfig(
        url=scheduler.url, token=TOKEN, heartbeat_interval_s=60.0, reconnect_initial_s=0.1
    )
    fleet = Fleet.uniform(3, base, language_sets=[["en", "zh"], ["ja", "ko"]])
    await fleet.start()
    try:
        connections = [await scheduler.next_connection() for _ in range(3)]
        registers = [await connection.next_message() for connection in connections]
        for index, connection in enumerate(connections):
            await connection.ack(f"node-0000000{index}")
        await fleet.wait_until_registered(STEP_TIMEOUT)

        assert fleet.registered_count == fleet.connected_count == 3
        assert sorted(tuple(r["language_capabilities"]["asr_languages"]) for r in registers) == [
            ("en", "zh"),
            ("en", "zh"),
            ("ja", "ko"),
        ]
        assert "registered 3/3" in fleet.status_line()
    finally:
        await fleet.stop()

    assert fleet.connected_count == 0
    assert scheduler.connection_count == 3


def job_assign(job_id: str) -> dict[str, Any]:
    return {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": 1,
        "session_id": "s-1",
        "utterance_index": 0,
        "src_lang": "zh",
        "tgt_lang": "en",
        "pipeline": {
            "use_asr": True,
            "use_nmt": True,
            "use_tts": True,
            "use_semantic": False,
            "use_tone": False,
        },
        "audio": "",
        "audio_format": "pcm16",
        "sample_rate": 16000,
        "trace_id": f"t-{job_id}",
    }


async def test_a_rejected_handshake_is_recorded_and_retried_with_backoff() -> None:
    def reject(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "bad token\n")

    async def never_called(ws: ServerConnection) -> None:
        raise AssertionError("the handshake should have been rejected")

    async with serve(never_called, "127.0.0.1", 0, process_request=reject) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        node = SimulatedNode(
            SimulatedNodeConfig(
                url=f"ws://127.0.0.1:{port}/ws/node",
                token=TOKEN,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.1,
            )
        )
        await node.start()
        try:
            await node.wait_for(lambda: len(node.handshake_statuses) >= 2, STEP_TIMEOUT)
        finally:
            await node.stop()

    assert set(node.handshake_statuses) == {403}
    assert node.connections == 0
    assert node.sent == []
