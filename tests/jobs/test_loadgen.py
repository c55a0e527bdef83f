"""The REST load generator (`jobs.loadgen`) against a tiny scripted HTTP server speaking PROTOCOL section 3.

The server runs on its own event loop in a thread, so the same fake serves async tests (`run_load`) and the
synchronous management command. No database and no scheduler are involved.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command

from jobs.loadgen import JobRecord, LoadConfig, LoadReport, framed_audio, percentile, run_load

API_KEY = "ak_loadtest.do-not-print-this-secret"
SECRET = "do-not-print-this-secret"
REASONS = {200: "OK", 202: "Accepted", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


@dataclass
class Plan:
    """What the fake API does with the n-th POST it receives."""

    state: str = "DONE"  # DONE, FAILED, CANCELLED; or HTTP to refuse the POST
    delay: float = 0.0  # seconds from creation until the job is terminal
    reason: str | None = None  # FAILED: error.code
    reason_in_attempts_only: bool = False
    status: int = 0  # HTTP: the status to refuse with
    code: str = ""  # HTTP: error.code
    retry_after: str | None = None
    get_statuses: list[int] = field(default_factory=list)  # statuses answered to the first GETs
    vanish: bool = False  # GETs answer 404, as for a job past its retention


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any] | None


class FakeApi:
    def __init__(self, plans: list[Plan]) -> None:
        self.plans = plans
        self.posts = 0
        self.requests: list[Seen] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # HTTP/1.1 with keep-alive: httpx reuses each connection for many requests.
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                parts = urlsplit(target)
                seen = Seen(
                    method, parts.path, parse_qs(parts.query), headers, json.loads(raw) if raw else None
                )
                self.requests.append(seen)
                status, body, extra = await self.answer(seen)
                payload = json.dumps(body).encode()
                head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
                head += [f"{k}: {v}" for k, v in {"Content-Type": "application/json", **extra}.items()]
                head.append(f"Content-Length: {len(payload)}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def answer(self, seen: Seen) -> tuple[int, dict[str, Any], dict[str, str]]:
        if seen.headers.get("authorization") != f"Bearer {API_KEY}":
            return 401, error("UNAUTHORIZED"), {}
        wait = float(seen.query["wait"][0]) if "wait" in seen.query else 0.0
        if seen.method == "POST" and seen.path == "/api/v1/jobs":
            return await self.submit(seen, wait)
        if seen.method == "GET" and seen.path.startswith("/api/v1/jobs/"):
            return await self.get(seen.path.rsplit("/", 1)[1], wait)
        return 404, error("NOT_FOUND"), {}

    async def submit(self, seen: Seen, wait: float) -> tuple[int, dict[str, Any], dict[str, str]]:
        plan = self.plans[self.posts] if self.posts < len(self.plans) else Plan()
        self.posts += 1
        if plan.state == "HTTP":
            extra = {"Retry-After": plan.retry_after} if plan.retry_after is not None else {}
            return plan.status, error(plan.code), extra
        job_id = f"job-{self.posts}"
        self.jobs[job_id] = {"plan": plan, "ready_at": time.monotonic() + plan.delay, "gets": 0}
        job = await self.long_poll(job_id, wait)
        if wait and job["state"] == plan.state:
            return 200, job, {}
        short = {k: job[k] for k in ("job_id", "state", "attempt_id", "node_id", "pool", "created_at")}
        return 202, short, {}

    async def get(self, job_id: str, wait: float) -> tuple[int, dict[str, Any], dict[str, str]]:
        entry = self.jobs.get(job_id)
        if entry is None or entry["plan"].vanish:
            return 404, error("NOT_FOUND"), {}
        entry["gets"] += 1
        if entry["gets"] <= len(entry["plan"].get_statuses):
            return (
                entry["plan"].get_statuses[entry["gets"] - 1],
                error("DEPENDENCY_DOWN"),
                {"Retry-After": "0"},
            )
        return 200, await self.long_poll(job_id, wait), {}

    async def long_poll(self, job_id: str, wait: float) -> dict[str, Any]:
        entry = self.jobs[job_id]
        remaining = entry["ready_at"] - time.monotonic()
        if remaining > 0 and wait > 0:
            await asyncio.sleep(min(remaining, wait))
        plan: Plan = entry["plan"]
        done = time.monotonic() >= entry["ready_at"]
        job: dict[str, Any] = {
            "job_id": job_id,
            "state": plan.state if done else "DISPATCHED",
            "attempt_id": 1,
            "node_id": "node-0000AAAA",
            "pool": "en-zh",
            "created_at": 1,
            "attempts": [
                {"attempt_id": 1, "node_id": "node-0000AAAA", "state": "DISPATCHED", "reason": None}
            ],
            "timings": {},
        }
        if done and plan.state == "DONE":
            job["result"] = {"text_asr": "a", "text_translated": "b", "tts_audio": "", "tts_format": "opus"}
        if done and plan.state in ("FAILED", "CANCELLED"):
            job["attempts"][-1].update(state=plan.state, reason=plan.reason or plan.state)
            if plan.state == "FAILED" and not plan.reason_in_attempts_only:
                job["error"] = {"code": plan.reason, "message": "scripted"}
        return job


def error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "scripted", "details": {}}}


@contextlib.contextmanager
def fake_api(plans: list[Plan]) -> Iterator[FakeApi]:
    api = FakeApi(plans)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(api.handle, "127.0.0.1", 0))
        api.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ready.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, name="fake-api", daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield api
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def config(api: FakeApi, **overrides: Any) -> LoadConfig:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "url": api.url,
        "count": 1,
        "concurrency": 1,
        "wait_s": 5.0,
    }
    settings.update(overrides)
    return LoadConfig(**settings)


async def test_terminal_states_reasons_and_http_errors_are_counted() -> None:
    plans = [
        Plan("DONE"),
        Plan("FAILED", reason="NO_AVAILABLE_NODE"),
        Plan("HTTP", status=503, code="DEPENDENCY_DOWN", retry_after="1"),
        Plan("DONE", delay=0.3),  # outlasts the POST long-poll: followed with GET ?wait=
        Plan("CANCELLED"),
        Plan("FAILED", reason="NODE_OFFLINE", reason_in_attempts_only=True),
        Plan("HTTP", status=429, code="RATE_LIMITED"),
        Plan("FAILED", reason="NO_AVAILABLE_NODE", delay=0.1),
        Plan("DONE"),
        Plan("HTTP", status=503, code="NO_CAPACITY"),
    ]
    with fake_api(plans) as api:
        report = await run_load(config(api, count=10, concurrency=3, wait_s=0.2))

    assert report.requested == 10
    assert report.submitted == 7
    assert report.not_submitted == 3
    assert report.unfinished == 0
    assert report.terminal == {"DONE": 3, "FAILED": 3, "CANCELLED": 1}
    assert report.reasons == {
        "FAILED": {"NO_AVAILABLE_NODE": 2, "NODE_OFFLINE": 1},
        "CANCELLED": {"CANCELLED": 1},
    }
    assert report.http_errors == {503: 2, 429: 1}
    assert report.http_error_codes == {"503 DEPENDENCY_DOWN": 1, "503 NO_CAPACITY": 1, "429 RATE_LIMITED": 1}
    assert len(report.latencies_s) == 7
    # Without an Idempotency-Key a refused POST is not retried: a retry could create the job twice.
    assert sum(r.method == "POST" for r in api.requests) == 10
    gets = [r for r in api.requests if r.method == "GET"]
    assert gets and all(r.query["wait"] == ["0.2"] for r in gets)
    posts = [r for r in api.requests if r.method == "POST"]
    assert all(r.query == {"wait": ["0.2"]} for r in posts)
    body = posts[0].body
    assert body is not None
    assert body.keys() == {"src_lang", "tgt_lang", "audio", "audio_format", "sample_rate"}
    assert (body["audio_format"], body["sample_rate"]) == ("opus", 16000)
    assert all("idempotency-key" not in r.headers for r in posts)


async def test_latency_is_submit_to_terminal_and_percentiles_follow_it() -> None:
    delays = [0.1, 0.2, 0.3, 0.4]
    with fake_api([Plan("DONE", delay=d) for d in delays]) as api:
        report = await run_load(config(api, count=4, concurrency=4))

    latencies = report.latencies_s
    assert len(latencies) == 4
    for measured, delay in zip(latencies, delays, strict=True):
        assert delay - 0.01 <= measured < delay + 0.25
    summary = report.latency_summary_ms()
    # Nearest rank over four values: p50 is the 2nd, p95 and p99 the 4th.
    assert summary["p50"] == pytest.approx(latencies[1] * 1000, abs=0.01)
    assert summary["p95"] == summary["p99"] == summary["max"] == pytest.approx(latencies[3] * 1000, abs=0.01)
    assert report.throughput == pytest.approx(4 / report.duration_s)


async def test_without_wait_the_job_is_polled_and_a_short_terminal_answer_is_completed_by_a_get() -> None:
    plans = [Plan("FAILED", reason="POOL_EMPTY"), Plan("DONE", delay=0.2)]
    with fake_api(plans) as api:
        report = await run_load(config(api, count=2, concurrency=1, wait_s=0, poll_interval_s=0.05))

    assert report.terminal == {"FAILED": 1, "DONE": 1}
    # The 202 of a job that failed at once has no reason; the loadgen fetched it.
    assert report.reasons == {"FAILED": {"POOL_EMPTY": 1}}
    assert all("wait" not in r.query for r in api.requests)
    assert sum(r.method == "GET" and r.path.endswith("/job-2") for r in api.requests) >= 2


async def test_idempotency_keys_are_unique_per_job_and_reused_by_a_retry() -> None:
    plans = [Plan("HTTP", status=503, code="DEPENDENCY_DOWN", retry_after="0"), Plan("DONE"), Plan("DONE")]
    with fake_api(plans) as api:
        report = await run_load(config(api, count=2, concurrency=1, idempotency=True))

    posts = [r for r in api.requests if r.method == "POST"]
    keys = [r.headers["idempotency-key"] for r in posts]
    assert len(posts) == 3
    assert keys[0] == keys[1] != keys[2]
    assert posts[0].body == posts[1].body
    assert report.terminal == {"DONE": 2}
    assert report.http_errors == {503: 1}
    assert report.not_submitted == 0


async def test_a_get_that_fails_for_a_while_is_retried_and_a_vanished_job_is_unfinished() -> None:
    plans = [Plan("DONE", delay=0.3, get_statuses=[503, 503]), Plan("DONE", delay=0.3, vanish=True)]
    with fake_api(plans) as api:
        report = await run_load(config(api, count=2, concurrency=2, wait_s=0.1))

    assert report.terminal == {"DONE": 1}
    assert report.unfinished == 1
    assert report.submitted == 2
    assert report.http_errors == {503: 2, 404: 1}


async def test_a_job_still_running_at_the_client_deadline_is_unfinished() -> None:
    with fake_api([Plan("DONE", delay=10)]) as api:
        report = await run_load(config(api, wait_s=0.2, job_timeout_s=0.5))

    assert report.unfinished == 1
    assert report.terminal == {}
    assert report.latency_summary_ms() == {"p50": None, "p95": None, "p99": None, "max": None}


async def test_a_wrong_key_shows_up_as_401s() -> None:
    with fake_api([]) as api:
        report = await run_load(config(api, api_key="ak_other.wrong", count=3, concurrency=2))

    assert report.http_errors == {401: 3}
    assert report.not_submitted == 3


async def test_an_unreachable_server_is_counted_as_transport_errors() -> None:
    report = await run_load(LoadConfig(api_key=API_KEY, url="http://127.0.0.1:1", count=2))

    assert report.transport_errors == {"ConnectError": 2}
    assert report.not_submitted == 2


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([0.1, 0.2, 0.3], 50) == 0.2
    assert percentile([0.1, 0.2, 0.3], 95) == 0.3
    assert percentile([7.0], 1) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_report_summarises_records() -> None:
    records = [JobRecord(i, "terminal", f"job-{i}", "DONE", None, (i + 1) / 100) for i in range(100)]
    records.append(JobRecord(100, "terminal", "job-100", "FAILED", "JOB_TIMEOUT", 5.0))
    records.append(JobRecord(101, "unfinished", "job-101"))
    records.append(JobRecord(102))
    report = LoadReport("http://x", 103, 8, 10.0, records)
    report.http_errors.update({503: 2})

    data = report.to_dict()

    assert data["submitted"] == 102
    assert data["not_submitted"] == 1
    assert data["unfinished"] == 1
    assert data["terminal"] == {"DONE": 100, "FAILED": 1, "CANCELLED": 0}
    assert data["reasons"] == {"FAILED": {"JOB_TIMEOUT": 1}}
    assert data["http_errors"] == {"503": 2}
    assert data["throughput_jobs_per_s"] == 10.1
    assert data["latency_ms"] == {"count": 101, "p50": 510.0, "p95": 960.0, "p99": 1000.0, "max": 5000.0}
    text = report.format_text()
    assert "FAILED reasons: JOB_TIMEOUT 1" in text
    assert "503 x2" in text
    assert "p50 510.0 ms" in text


def test_the_audio_is_opus_framed_random_bytes_of_the_requested_size() -> None:
    audio = framed_audio(random.Random(1), 500)
    offset, packets = 0, 0
    while offset + 2 <= len(audio):
        (length,) = struct.unpack_from("<H", audio, offset)
        offset += 2 + length
        packets += 1

    assert len(audio) == 500
    assert offset == 500
    assert packets == 4


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_key": "no-dot"},
        {"count": 0},
        {"concurrency": 0},
        {"wait_s": 31},
        {"audio_bytes": 0},
        {"url": "ftp://x"},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"api_key": API_KEY, **overrides}
    with pytest.raises(ValueError) as raised:
        LoadConfig(**settings)
    assert SECRET not in str(raised.value)


def test_the_command_prints_a_report_without_the_secret() -> None:
    plans = [
        Plan("DONE"),
        Plan("FAILED", reason="NO_AVAILABLE_NODE"),
        Plan("HTTP", status=429, code="RATE_LIMITED"),
    ]
    with fake_api(plans) as api:
        text_out = io.StringIO()
        call_command("submit_jobs", "--url", api.url, "--api-key", API_KEY, "--count", "3", stdout=text_out)
    with fake_api([Plan("DONE"), Plan("CANCELLED")]) as api:
        json_out = io.StringIO()
        call_command(
            "submit_jobs",
            "--url",
            api.url,
            "--api-key",
            API_KEY,
            "--count",
            "2",
            "--json",
            "--idempotency",
            stdout=json_out,
        )

    text = text_out.getvalue()
    assert SECRET not in text and SECRET not in json_out.getvalue()
    assert "key id ak_loadtest" in text
    assert "Terminal: DONE 1, FAILED 1, CANCELLED 0" in text
    assert "FAILED reasons: NO_AVAILABLE_NODE 1" in text
    assert "429 x1 (RATE_LIMITED 1)" in text
    assert "p50" in text and "jobs/s" in text
    data = json.loads(json_out.getvalue())
    assert data["terminal"] == {"DONE": 1, "FAILED": 0, "CANCELLED": 1}
    assert data["reasons"] == {"CANCELLED": {"CANCELLED": 1}}
    assert set(data["latency_ms"]) == {"count", "p50", "p95", "p99", "max"}


def test_the_command_explains_a_missing_or_malformed_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.management.base import CommandError

    monkeypatch.delenv("SCHEDULER_API_KEY", raising=False)
    with pytest.raises(CommandError, match="API key is required"):
        call_command("submit_jobs")
    with pytest.raises(CommandError, match="<id>.<secret>"):
        call_command("submit_jobs", "--api-key", "nodot")


def test_base64_body_audio_decodes_to_the_requested_size() -> None:
    with fake_api([Plan("DONE")]) as api:
        asyncio.run(run_load(config(api, audio_bytes=1000)))

    body = api.requests[0].body
    assert body is not None
    assert len(base64.b64decode(body["audio"], validate=True)) == 1000
