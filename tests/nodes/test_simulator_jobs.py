"""The simulator answers jobs like the real lingua node (reference section 1.3 e-i and 1.5).

A tiny `websockets` server plays the scheduler, so these tests need neither Django nor the project's
consumer: they pin down what the simulator puts on the wire, which the server-side job path is then
tested against.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from nodes.simulator import Fleet, SimulatedNode, SimulatedNodeConfig

ISSUED_ID = "node-5EED0001"
STEP_TIMEOUT = 5.0

# The exact keys of a successful result (reference 1.3 i, and the brief of the simulator).
SUCCESS_KEYS = {
    "type",
    "job_id",
    "attempt_id",
    "node_id",
    "session_id",
    "utterance_index",
    "success",
    "text_asr",
    "text_translated",
    "tts_audio",
    "tts_format",
    "extra",
    "processing_time_ms",
    "trace_id",
    # The real node's ASR quality report (`node-agent-result-sender.ts`).
    "asr_quality_level",
    "reason_codes",
    "quality_score",
    "rerun_count",
    "segments_meta",
}
# The real node's error result: `node-agent-result-sender.ts`, as in the MODEL_NOT_AVAILABLE example.
ERROR_KEYS = {
    "type",
    "job_id",
    "attempt_id",
    "node_id",
    "session_id",
    "utterance_index",
    "success",
    "processing_time_ms",
    "trace_id",
    "error",
}


class Peer:
    """The scheduler's side of one node socket."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def next_frame(self, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next_of_type(self, frame_type: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        while True:
            frame = await self.next_frame(timeout)
            if frame["type"] == frame_type:
                return frame

    async def frames_until_heartbeat(self, node: SimulatedNode) -> list[dict[str, Any]]:
        """Every frame the node sent before a heartbeat sent now (frames arrive in order): proof that
        nothing else was sent, without sleeping for an arbitrary time."""
        await node.send_heartbeat()
        seen = []
        while True:
            frame = await self.next_frame()
            if frame["type"] == "node_heartbeat":
                return seen
            seen.append(frame)


Pair = tuple[SimulatedNode, Peer]


@pytest.fixture
async def connect_node() -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    peers: asyncio.Queue[Peer] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        peer = Peer(ws)
        await peers.put(peer)
        async for raw in ws:
            await peer.frames.put(json.loads(raw))

    nodes: list[SimulatedNode] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]

        async def factory(**overrides: Any) -> Pair:
            settings: dict[str, Any] = {
                "url": f"ws://127.0.0.1:{port}/ws/node",
                "token": "tok.secret",
                "heartbeat_interval_s": 60.0,
                "reconnect": False,
                "seed": 11,
            }
            settings.update(overrides)
            node = SimulatedNode(SimulatedNodeConfig(**settings))
            nodes.append(node)
            await node.start()
            peer = await asyncio.wait_for(peers.get(), STEP_TIMEOUT)
            await peer.next_of_type("node_register")
            await peer.send(
                {
                    "type": "node_register_ack",
                    "node_id": ISSUED_ID,
                    "message": "Node registered successfully",
                    "status": "registering",
                }
            )
            await peer.next_of_type("node_heartbeat")
            return node, peer

        yield factory
        for node in nodes:
            await node.stop()


def job_assign(job_id: str, attempt_id: int = 1, utterance_index: int = 0, **extra: Any) -> dict[str, Any]:
    message = {
        "type": "job_assign",
        "job_id": job_id,
        "attempt_id": attempt_id,
        "session_id": "s-1",
        "utterance_index": utterance_index,
        "src_lang": "zh",
        "tgt_lang": "en",
        "pipeline": {
            "use_asr": True,
            "use_nmt": True,
            "use_tts": True,
            "use_semantic": False,
            "use_tone": False,
        },
        "audio": base64.b64encode(b"\x03\x00abc").decode(),
        "audio_format": "opus",
        "sample_rate": 16000,
        "trace_id": f"t-{job_id}",
    }
    message.update(extra)
    return message


async def test_a_job_is_answered_with_a_well_formed_success_after_its_latency(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=150)
    loop = asyncio.get_running_loop()

    sent_at = loop.time()
    await peer.send(job_assign("job-1", attempt_id=3, utterance_index=7))
    result = await peer.next_of_type("job_result")
    elapsed = loop.time() - sent_at

    assert elapsed >= 0.14
    assert result.keys() == SUCCESS_KEYS
    assert result["job_id"] == "job-1"
    assert result["attempt_id"] == 3  # echoed, neither checked nor incremented
    assert result["node_id"] == ISSUED_ID
    assert (result["session_id"], result["utterance_index"], result["trace_id"]) == ("s-1", 7, "t-job-1")
    assert result["success"] is True
    assert result["text_asr"] and result["text_translated"]
    assert result["tts_format"] == "opus"
    audio = base64.b64decode(result["tts_audio"], validate=True)
    (packet_length,) = struct.unpack_from("<H", audio)
    assert 0 < packet_length == len(audio) - 2  # one Opus packet in the node's uint16-LE framing
    assert 140 <= result["processing_time_ms"] < 2000
    timings = result["extra"]["service_timings"]
    assert timings.keys() == {"asr_ms", "nmt_ms", "tts_ms", "total_ms"}
    assert timings["total_ms"] == result["processing_time_ms"]
    assert (node.jobs_completed, node.results_sent, node.duplicates_seen) == (1, 1, 0)
    assert node.outcomes == {"success": 1}
    assert node.active_jobs == {}


async def test_zero_processing_time_answers_at_once_and_stages_follow_the_pipeline(connect_node: Any) -> None:
    _, peer = await connect_node(processing_ms=0)
    pipeline = {"use_asr": True, "use_nmt": True, "use_tts": False}

    await peer.send(job_assign("job-1", pipeline=pipeline))
    result = await peer.next_of_type("job_result", timeout=1.0)

    assert result["success"] is True
    assert result["processing_time_ms"] < 100
    assert result["tts_audio"] == ""
    assert "tts_ms" not in result["extra"]["service_timings"]


async def test_a_job_id_seen_before_is_refused_like_the_real_node_and_not_processed(
    connect_node: Any,
) -> None:
    node, peer = await connect_node(processing_ms=100)

    await peer.send(job_assign("job-1"))
    first = await peer.next_of_type("job_result")
    # A retry of the same job must go elsewhere: the same node refuses it, whatever the attempt.
    await peer.send(job_assign("job-1", attempt_id=2))
    refusal = await peer.next_of_type("job_result")
    later = await peer.frames_until_heartbeat(node)

    assert first["success"] is True
    assert refusal.keys() == ERROR_KEYS
    assert refusal["success"] is False
    assert refusal["attempt_id"] == 2
    assert refusal["error"]["code"] == "PROCESSING_ERROR"
    assert refusal["error"]["message"].startswith("DUPLICATE_JOB_ID: ")
    assert "job-1" in refusal["error"]["message"]
    assert later == []
    assert node.duplicates_seen == 1
    assert node.jobs_completed == 1
    assert node.results_sent == 2
    assert node.peak_concurrency == 1


async def test_a_duplicate_arriving_while_the_job_runs_is_refused_at_once(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=400)

    await peer.send(job_assign("job-1"))
    await peer.send(job_assign("job-1"))
    refusal = await peer.next_of_type("job_result")
    result = await peer.next_of_type("job_result")

    assert refusal["success"] is False and refusal["error"]["message"].startswith("DUPLICATE_JOB_ID")
    assert result["success"] is True
    assert node.peak_concurrency == 1


async def test_a_repeated_utterance_is_refused_only_when_configured(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=0, reject_duplicate_utterance=True)

    await peer.send(job_assign("job-1", utterance_index=4))
    await peer.send(job_assign("job-2", utterance_index=4))
    first = await peer.next_of_type("job_result")
    second = await peer.next_of_type("job_result")

    by_job = {first["job_id"]: first, second["job_id"]: second}
    assert by_job["job-1"]["success"] is True
    assert by_job["job-2"]["error"]["code"] == "PROCESSING_ERROR"
    assert by_job["job-2"]["error"]["message"].startswith("DUPLICATE_UTTERANCE_INDEX: ")
    assert node.duplicates_seen == 1


async def test_model_not_available_has_exactly_the_real_nodes_shape(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=500, model_not_available_rate=1.0)
    loop = asyncio.get_running_loop()

    sent_at = loop.time()
    await peer.send(job_assign("job-1", attempt_id=2, utterance_index=7))
    result = await peer.next_of_type("job_result")

    # The real node fails before starting the pipeline, so it does not wait for the processing time.
    assert loop.time() - sent_at < 0.4
    assert isinstance(result.pop("processing_time_ms"), int)
    assert result == {
        "type": "job_result",
        "job_id": "job-1",
        "attempt_id": 2,
        "node_id": ISSUED_ID,
        "session_id": "s-1",
        "utterance_index": 7,
        "success": False,
        "trace_id": "t-job-1",
        "error": {
            "code": "MODEL_NOT_AVAILABLE",
            "message": "Service nmt-m2m100@1.0 is not available: not_installed",
            "details": {"service_id": "nmt-m2m100", "service_version": "1.0", "reason": "not_installed"},
        },
    }
    assert node.outcomes == {"model_not_available": 1}
    assert node.jobs_completed == 1


async def test_a_failure_is_a_processing_error_result_after_the_latency(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=100, failure_rate=1.0)

    await peer.send(job_assign("job-1"))
    result = await peer.next_of_type("job_result")

    assert result.keys() == ERROR_KEYS
    assert result["success"] is False
    assert result["error"]["code"] == "PROCESSING_ERROR"
    assert result["processing_time_ms"] >= 90
    assert node.outcomes == {"failure": 1}


async def test_a_silently_dropped_job_gets_no_answer_at_all(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=50, silent_drop_rate=1.0, send_ack=True)

    await peer.send(job_assign("job-1"))
    await node.wait_for(lambda: node.outcomes["silent_drop"] == 1)
    frames = await peer.frames_until_heartbeat(node)

    # Only the (optional) ack: the job timeout has to decide this job.
    assert [frame["type"] for frame in frames] == ["job_ack"]
    assert node.results_sent == node.jobs_completed == 0
    assert node.active_jobs == {}


async def test_a_write_off_follows_the_real_result_for_an_earlier_job(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=0, write_off_rate=1.0)

    await peer.send(job_assign("job-1", attempt_id=1, utterance_index=1))
    first = await peer.next_of_type("job_result")
    # The first job had no earlier job to absorb, so nothing else was sent for it.
    assert await peer.frames_until_heartbeat(node) == []
    await peer.send(job_assign("job-2", attempt_id=2, utterance_index=2))
    real = await peer.next_of_type("job_result")
    write_off = await peer.next_of_type("job_result")

    assert first["job_id"] == "job-1" and first["success"] is True
    assert real["job_id"] == "job-2" and real["text_asr"]
    assert write_off["job_id"] == "job-1"
    assert write_off["attempt_id"] == 2  # the main job's attempt, as the real result builder does
    assert write_off["utterance_index"] == 1  # rewritten to the absorbed job's
    assert write_off["node_id"] == ISSUED_ID
    assert write_off["success"] is True
    assert write_off["text_asr"] == ""
    assert write_off["extra"]["reason"] == "NO_TEXT_ASSIGNED"
    assert node.outcomes["write_off"] == 1
    assert node.jobs_completed == 2
    assert node.results_sent == 3


async def test_a_write_off_prefers_a_job_that_never_got_its_own_result(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=0)

    # The config is read per job, so one node can be steered through a scripted sequence.
    node.config.silent_drop_rate = 1.0
    await peer.send(job_assign("job-a", utterance_index=1))
    await node.wait_for(lambda: node.outcomes["silent_drop"] == 1)
    node.config.silent_drop_rate = 0.0
    await peer.send(job_assign("job-b", utterance_index=2))
    await peer.next_of_type("job_result")
    node.config.write_off_rate = 1.0
    await peer.send(job_assign("job-c", utterance_index=3))
    real = await peer.next_of_type("job_result")
    write_off = await peer.next_of_type("job_result")

    assert real["job_id"] == "job-c"
    # job-b is more recent but already answered; the buffered job-a is the one the real node writes off.
    assert write_off["job_id"] == "job-a"
    assert write_off["utterance_index"] == 1


async def test_job_cancel_stops_a_job_in_flight_and_no_result_follows(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=300)

    await peer.send(job_assign("job-1"))
    await node.wait_for(lambda: "job-1" in node.active_jobs)
    await peer.send({"type": "job_cancel", "job_id": "job-1", "reason": "job_timeout", "trace_id": "t-job-1"})
    await node.wait_for(lambda: node.outcomes["cancelled"] == 1)
    await asyncio.sleep(0.4)  # past the job's latency: a result would have been sent by now
    frames = await peer.frames_until_heartbeat(node)

    assert frames == []
    assert node.active_jobs == {}
    assert node.results_sent == node.jobs_completed == 0
    # A cancelled job id stays seen: sending it again is a duplicate, as on the real node.
    await peer.send(job_assign("job-1", attempt_id=2))
    refusal = await peer.next_of_type("job_result")
    assert refusal["error"]["message"].startswith("DUPLICATE_JOB_ID")


async def test_heartbeats_report_jobs_in_flight_and_peak_concurrency_is_recorded(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=400)

    for index in range(3):
        await peer.send(job_assign(f"job-{index}", utterance_index=index))
    await node.wait_for(lambda: len(node.active_jobs) == 3)
    await node.send_heartbeat()
    busy = await peer.next_of_type("node_heartbeat")
    results = [await peer.next_of_type("job_result") for _ in range(3)]
    await node.send_heartbeat()
    idle = await peer.next_of_type("node_heartbeat")

    assert busy["resource_usage"]["running_jobs"] == 3
    assert idle["resource_usage"]["running_jobs"] == 0
    assert sorted(result["job_id"] for result in results) == ["job-0", "job-1", "job-2"]
    assert node.peak_concurrency == 3
    assert node.jobs_completed == 3


async def test_streaming_jobs_send_asr_partials_before_the_result(connect_node: Any) -> None:
    _, peer = await connect_node(processing_ms=200)

    await peer.send(
        job_assign("job-1", utterance_index=5, enable_streaming_asr=True, partial_update_interval_ms=60)
    )
    frames = []
    while not frames or frames[-1]["type"] != "job_result":
        frames.append(await peer.next_frame())
    partials = [frame for frame in frames if frame["type"] == "asr_partial"]
    result = frames[-1]

    assert [frame["type"] for frame in frames[:-1]] == ["asr_partial"] * len(partials)
    assert len(partials) >= 2
    assert [p["is_final"] for p in partials] == [False] * (len(partials) - 1) + [True]
    assert partials[-1]["text"] == result["text_asr"]
    for partial in partials:
        assert partial.keys() == {
            "type",
            "job_id",
            "node_id",
            "session_id",
            "utterance_index",
            "text",
            "is_final",
            "trace_id",
        }
        assert (partial["job_id"], partial["node_id"], partial["utterance_index"]) == ("job-1", ISSUED_ID, 5)
        assert result["text_asr"].startswith(partial["text"])


async def test_partials_are_not_sent_unless_the_job_asks_for_streaming(connect_node: Any) -> None:
    node, peer = await connect_node(processing_ms=0)

    await peer.send(job_assign("job-1"))
    await peer.next_of_type("job_result")

    assert node.sent_of_type("asr_partial") == []


async def test_send_ack_acks_before_answering(connect_node: Any) -> None:
    _, peer = await connect_node(processing_ms=0, send_ack=True)

    await peer.send(job_assign("job-1"))
    first = await peer.next_frame()
    second = await peer.next_frame()

    assert (first["type"], second["type"]) == ("job_ack", "job_result")


def test_outcomes_depend_only_on_the_seed_and_arrival_order() -> None:
    config = SimulatedNodeConfig(
        seed=5, processing_ms=100, processing_jitter_ms=50, failure_rate=0.3, silent_drop_rate=0.2
    )
    first, second = SimulatedNode(config), SimulatedNode(config)
    # Heartbeats draw resource figures from another stream; they must not shift job outcomes.
    second.node_id = ISSUED_ID
    second.build_heartbeat()

    plans_a = [first.plan_job() for _ in range(200)]
    plans_b = [second.plan_job() for _ in range(200)]

    assert plans_a == plans_b
    outcomes = [plan.outcome for plan in plans_a]
    assert {"success", "failure", "silent_drop"} == set(outcomes)
    assert all(0.05 <= plan.latency_s <= 0.15 for plan in plans_a)
    # Roughly the configured shares (200 draws).
    assert 30 <= outcomes.count("failure") <= 90
    assert 15 <= outcomes.count("silent_drop") <= 65


@pytest.mark.parametrize(
    "overrides",
    [
        {"failure_rate": 1.5},
        {"write_off_rate": -0.1},
        {"failure_rate": 0.6, "silent_drop_rate": 0.6},
        {"processing_ms": -1},
        {"processing_jitter_ms": -5},
    ],
)
def test_invalid_answering_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatedNodeConfig(**overrides)


def test_the_fleet_status_line_shows_completed_jobs_and_peak_concurrency() -> None:
    fleet = Fleet.uniform(2, SimulatedNodeConfig(seed=1))
    fleet.nodes[0].jobs_completed, fleet.nodes[0].peak_concurrency = 5, 2
    fleet.nodes[1].jobs_completed, fleet.nodes[1].peak_concurrency = 4, 3

    line = fleet.status_line()

    assert "completed 9" in line
    assert "peak-concurrency 3" in line
