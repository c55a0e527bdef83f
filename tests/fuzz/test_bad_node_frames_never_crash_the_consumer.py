"""Hypothesis over node frames through a real socket against a real server: malformed, oversized,
wrong-typed, out-of-order, stale-attempt, duplicate and foreign-job frames (tests/fuzz/frames.py), sent by a
registered node that holds a job while another node holds a second one.

After every drawn batch the consumer must still answer on the same socket (a probe frame gets its own
`error` back) and never report an INTERNAL_ERROR; only a frame over the size limit may close the socket, and
only with 1009. At the end no slot is left on either node and the server logged no error.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from core.redis import Keys
from tests.factories import heartbeat_message, register_message
from tests.fuzz.conftest import error_lines, read_log
from tests.fuzz.frames import Context, Frame, any_frame

EXAMPLES = 60
MAX_BYTES = 65536


def frame_size(frame: Frame) -> int:
    if isinstance(frame, bytes):
        return len(frame)
    return len((frame if isinstance(frame, str) else json.dumps(frame)).encode())


class NodeSocket:
    """A raw node connection (sync, for hypothesis): registers, keeps the frames it receives."""

    def __init__(self, ws_url: str, token: str) -> None:
        self.url = f"{ws_url}/ws/node?token={token}"
        self.ws: ClientConnection | None = None
        self.node_id: str | None = None
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None

    def open(self) -> None:
        self.ws = connect(self.url, max_size=None, open_timeout=5)
        self.close_code = None
        self.send(register_message(node_id=self.node_id))
        self.node_id = self.expect(lambda f: f["type"] == "node_register_ack")["node_id"]
        self.send(heartbeat_message(self.node_id))

    def send(self, frame: Frame) -> None:
        assert self.ws is not None
        self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    def expect(self, match, timeout: float = 20.0) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        """The first frame received from now on (or already kept and not yet matched) that `match`es."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.received:
                if match(frame):
                    self.received.remove(frame)
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; kept {self.received[-5:]}")
            try:
                self.received.append(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                self.close_code = closed.rcvd.code if closed.rcvd else None
                raise

    def closed(self) -> bool:
        return self.ws is None or self.close_code is not None


class Harness:
    def __init__(self, server, api_key: str, token: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
        self.server = server
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
        self.fuzzed = NodeSocket(server.ws_url, token)
        self.other = NodeSocket(server.ws_url, token)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.keys = Keys("sched")
        self.held: tuple[str, int] | None = None
        self.foreign = ""
        self.probes = 0
        self.internal_errors: list[dict[str, Any]] = []

    def start(self) -> None:
        self.fuzzed.open()
        self.other.open()
        for node in (self.fuzzed, self.other):
            node.expect(lambda f: f["type"] == "node_status" and f.get("status") == "ready")
        self.foreign = self.assign_job(self.other)[0]

    def assign_job(self, node: NodeSocket) -> tuple[str, int]:
        response = self.http.post("/api/v1/jobs", json={"src_lang": "zh", "tgt_lang": "en", "audio": "AAEC", "node_id": node.node_id})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        try:
            assign = node.expect(lambda f: f["type"] == "job_assign" and f["job_id"] == job_id)
        except AssertionError as missing:
            raise AssertionError(f"{missing}\njob: {self.http.get(f'/api/v1/jobs/{job_id}').text}\n"
                                 f"node: {self.redis.hgetall(self.keys.node_meta(node.node_id))}\n"
                                 f"capabilities: {self.redis.hgetall(self.keys.node_capabilities(node.node_id))}") from None
        return job_id, int(assign["attempt_id"])

    def prepare(self) -> Context:
        """A live, ready fuzzed node holding a live job, whatever the previous batch did to it."""
        if self.fuzzed.closed():
            self.fuzzed.open()
        self.fuzzed.send(register_message(node_id=self.fuzzed.node_id))
        self.fuzzed.expect(lambda f: f["type"] == "node_register_ack")
        self.fuzzed.send(heartbeat_message(self.fuzzed.node_id))
        if self.held is None or self.job_state(self.held[0]) in ("DONE", "FAILED", "CANCELLED"):
            self.held = self.assign_job(self.fuzzed)
        assert self.fuzzed.node_id is not None
        return Context(self.fuzzed.node_id, self.held[0], self.held[1], self.foreign, MAX_BYTES)

    def job_state(self, job_id: str) -> str:
        return self.http.get(f"/api/v1/jobs/{job_id}").json()["state"]

    def send_batch(self, frames: list[tuple[str, Frame]]) -> None:
        """Send the frames in order, then probe; an oversized frame ends the batch, since the server closes the
        socket on it (1009) and anything sent after would race that close."""
        for _, frame in frames:
            self.fuzzed.send(frame)
            if frame_size(frame) > MAX_BYTES:
                assert self.wait_for_close() == 1009
                break
        else:
            self.probe()
        self.internal_errors += [f for f in self.fuzzed.received if f.get("code") == "INTERNAL_ERROR"]
        self.fuzzed.received = [f for f in self.fuzzed.received if f["type"] in ("job_assign", "node_status")]

    def wait_for_close(self) -> int | None:
        with contextlib.suppress(ConnectionClosed, AssertionError):
            self.fuzzed.expect(lambda f: False, timeout=5)
        assert self.fuzzed.ws is not None
        self.fuzzed.close_code = self.fuzzed.ws.close_code or -1
        return self.fuzzed.close_code

    def probe(self) -> None:
        """An unknown type comes back as an error naming it: the consumer read everything before it."""
        self.probes += 1
        name = f"probe-{self.probes}"
        self.fuzzed.send({"type": name})
        self.fuzzed.expect(lambda f: f["type"] == "error" and (f.get("details") or {}).get("type") == name)

    def finish(self) -> None:
        for job_id in (self.held[0] if self.held else None, self.foreign):
            if job_id:
                self.http.post(f"/api/v1/jobs/{job_id}/cancel")

    def slots_held(self) -> dict[str, int]:
        held = {}
        for node in (self.fuzzed, self.other):
            assert node.node_id is not None
            held[node.node_id] = self.redis.zcard(self.keys.node_reservations(node.node_id)) + self.redis.zcard(
                self.keys.node_running(node.node_id)
            )
        return held


@pytest.fixture
def harness(start_server, api_key: str, node_token: str, redis_url: str):  # type: ignore[no-untyped-def]
    server = start_server(
        NODE_MAX_MESSAGE_BYTES=str(MAX_BYTES),
        # Every batch is bad on purpose: the rate limit that closes a misbehaving node has its own test, and
        # so has the heartbeat rate limit (batches hold heartbeats; one that dropped the harness's own would
        # leave the node to time out).
        NODE_BAD_MESSAGE_LIMIT="1000000",
        NODE_HEARTBEAT_MIN_INTERVAL_S="0",
        # The harness heartbeats once per batch, not on a timer: liveness is not under test here.
        NODE_HEARTBEAT_TIMEOUT_S="60",
        # Held jobs must outlive the run: only the frames under test may end them.
        JOB_TIMEOUT_S="600",
        JOB_PENDING_TIMEOUT_S="60",
    )
    harness = Harness(server, api_key, node_token, redis_url)
    harness.start()
    yield harness
    harness.http.close()


@pytest.mark.timeout(360)
def test_bad_node_frames_never_crash_the_consumer_nor_leak_a_slot(harness: Harness, record_property) -> None:  # type: ignore[no-untyped-def]
    families: Counter[str] = Counter()
    examples = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def batch(data: st.DataObject) -> None:
        nonlocal examples
        drawn = data.draw(st.lists(any_frame(), min_size=1, max_size=4), label="frames")
        context = harness.prepare()
        frames = [(name, build(context)) for name, build in drawn]
        examples += 1
        families.update(name for name, _ in frames)
        harness.send_batch(frames)

    batch()
    harness.finish()
    deadline = time.monotonic() + 5
    while any(harness.slots_held().values()) and time.monotonic() < deadline:
        time.sleep(0.1)

    record_property("fuzz_cases", f"node frames: {examples} batches, {sum(families.values())} frames ("
                    + ", ".join(f"{name} {count}" for name, count in sorted(families.items())) + ")")  # fmt: skip
    assert examples == EXAMPLES
    assert set(families) == {"malformed", "wrong_typed", "oversized", "out_of_order", "stale_attempt", "duplicate", "foreign_job", "hostile_json"}
    assert harness.internal_errors == []
    assert harness.slots_held() == {harness.fuzzed.node_id: 0, harness.other.node_id: 0}
    assert harness.server.is_running()
    assert error_lines(read_log(harness.server.log_path)) == []
