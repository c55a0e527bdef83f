"""The hot job endpoints answer through `jobs/lean_api.py` (no Django request cycle) exactly as the Ninja routes
of the same endpoints answer: same statuses, bodies, and content types, for good and bad requests.

The lean route is reached through a real uvicorn process; the Ninja route through Django's test client,
which never passes `scheduler.asgi.application`. Both share this test's Redis and database.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.signals import request_started

from access.models import ApiKey, Scope
from core.api_errors import DEPENDENCY_DOWN_MESSAGE
from jobs import lean_api
from scheduler import asgi
from supervisor.embedded_redis import RedisProcess
from tests.api.conftest import KeyClient, bearer
from tests.conftest import point_at_redis
from tests.jobs.conftest import QUIET_NODES
from tests.jobs.support import AUDIO, ready_node, result_for

pytestmark = pytest.mark.django_db(transaction=True)

JOB = {"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO}


@pytest.fixture
def server(start_server):
    return start_server(server="uvicorn", **QUIET_NODES)


@pytest.fixture
def write_key(transactional_db) -> str:
    return ApiKey.issue("jobs", [Scope.JOBS_WRITE, Scope.JOBS_READ])[1]


@pytest.fixture
def read_only_key(transactional_db) -> str:
    return ApiKey.issue("reader", [Scope.JOBS_READ])[1]


async def both(server, method: str, path: str, *, key: str, body: bytes | None = None) -> tuple[tuple[int, str, Any], tuple[int, str, Any]]:
    """(status, content type, JSON) of the same request through the lean route and through Ninja."""
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        lean = await http.request(method, path, headers={**bearer(key), "Content-Type": "application/json"}, content=body)
    ninja = await KeyClient(key).generic(method, path, body or b"", content_type="application/json")
    return (
        (lean.status_code, lean.headers["content-type"], lean.json()),
        (ninja.status_code, ninja["Content-Type"], json.loads(ninja.content)),
    )


BAD_SUBMISSIONS = [
    ("the body is not JSON", b"{oops", {}),
    ("the body is empty", b"", {}),
    ("the body is a list", b"[1, 2]", {}),
    ("a required field is missing", json.dumps({"src_lang": "en", "audio": AUDIO}).encode(), {}),
    ("a field has the wrong type", json.dumps({**JOB, "sample_rate": "fast"}).encode(), {}),
    ("a nested field is wrong", json.dumps({**JOB, "pipeline": {"use_asr": "maybe"}}).encode(), {}),
    ("a value is out of range", json.dumps({**JOB, "sample_rate": 1, "timeout_ms": 5}).encode(), {}),
    ("the language is unknown", json.dumps({**JOB, "tgt_lang": "xx"}).encode(), {}),
    ("lang_a is unknown", json.dumps({**JOB, "lang_a": "qq"}).encode(), {}),
    ("a pass-through field has a loose type", json.dumps({**JOB, "enable_streaming_asr": "true"}).encode(), {}),
    ("the audio is not base64", json.dumps({**JOB, "audio": "%%%"}).encode(), {}),
    ("the pinned node is unknown", json.dumps({**JOB, "node_id": "node-00000000"}).encode(), {}),
    ("wait is not a number", json.dumps(JOB).encode(), {"query": "?wait=soon"}),
    ("wait is above 30 s", json.dumps(JOB).encode(), {"query": "?wait=31"}),
]


@pytest.mark.parametrize(("case", "body", "options"), BAD_SUBMISSIONS, ids=[case for case, _, _ in BAD_SUBMISSIONS])
async def test_a_bad_submission_gets_the_same_error_from_both_routes(server, write_key, case, body, options) -> None:
    lean, ninja = await both(server, "POST", f"/api/v1/jobs{options.get('query', '')}", key=write_key, body=body)

    assert lean == ninja
    assert lean[0] in (400, 413)
    assert set(lean[2]["error"]) == {"code", "message", "details"}


async def test_a_body_above_the_upload_limit_is_a_413_from_both_routes(server, write_key, settings) -> None:
    body = json.dumps({**JOB, "audio": "A" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 4)}).encode()

    lean, ninja = await both(server, "POST", "/api/v1/jobs", key=write_key, body=body)

    assert lean == ninja
    assert (lean[0], lean[2]["error"]["code"]) == (413, "TOO_LARGE")


AUTH_CASES = [
    ("an unknown key", "nope.nothing", "POST"),
    ("a malformed key", "no-dot-here", "GET"),
    ("a key without the write scope", "read_only", "POST"),
]


@pytest.mark.parametrize(("case", "key", "method"), AUTH_CASES, ids=[case for case, _, _ in AUTH_CASES])
async def test_a_refused_key_gets_the_same_answer_from_both_routes(server, read_only_key, case, key, method) -> None:
    key = read_only_key if key == "read_only" else key
    path = "/api/v1/jobs" if method == "POST" else "/api/v1/jobs/job-unknown"

    lean, ninja = await both(server, method, path, key=key, body=json.dumps(JOB).encode() if method == "POST" else None)

    assert lean == ninja
    assert lean[0] in (401, 403)


async def test_an_authorization_header_that_is_not_bearer_goes_to_django(server, write_key) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/api/v1/jobs/job-unknown", headers={"Authorization": f"Basic {write_key}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_an_unknown_job_is_the_same_404_from_both_routes(server, write_key) -> None:
    lean, ninja = await both(server, "GET", "/api/v1/jobs/job-000000000000?wait=0.2", key=write_key)

    assert lean == ninja
    assert (lean[0], lean[2]["error"]["code"]) == (404, "NOT_FOUND")


async def test_a_finished_job_reads_the_same_from_both_routes(server, write_key, node_token) -> None:
    wire, node_id = await ready_node(server, node_token)
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(write_key), timeout=20) as http:
        submitting = asyncio.create_task(
            http.post("/api/v1/jobs?wait=10", json={**JOB, "dialect": "yue", "turn_id": "t-7"}, headers={"Idempotency-Key": "k1"})
        )
        assign = await wire.expect("job_assign")
        await wire.send(result_for(assign, node_id))
        submitted = await submitting
        again = await http.post("/api/v1/jobs", json={**JOB, "dialect": "yue", "turn_id": "t-7"}, headers={"Idempotency-Key": "k1"})
        conflict = await http.post("/api/v1/jobs", json={**JOB, "tgt_lang": "de"}, headers={"Idempotency-Key": "k1"})
    await wire.close()

    # Optional job fields the submitter gave reach the node.
    assert (assign["dialect"], assign["turn_id"]) == ("yue", "t-7")
    assert submitted.status_code == 200
    job = submitted.json()
    assert (job["state"], job["node_id"], job["result"]["text_translated"]) == ("DONE", node_id, "The weather is nice today")
    assert (again.status_code, again.json()["job_id"]) == (202, job["job_id"])
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    lean, ninja = await both(server, "GET", f"/api/v1/jobs/{job['job_id']}?wait=1", key=write_key)
    assert lean == ninja
    assert lean[0] == 200 and lean[2] == job


async def test_an_error_of_the_lean_route_is_counted_and_logged_once(server, write_key) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(write_key)) as http:
        before = await metric_of(http, "NOT_FOUND")
        await http.get("/api/v1/jobs/job-missing-one")
        after = await metric_of(http, "NOT_FOUND")

    assert after == before + 1
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{") and "job-missing-one" in line]
    assert [(line["event"], line["code"]) for line in lines] == [("api_error", "NOT_FOUND")]


async def metric_of(http: httpx.AsyncClient, code: str) -> float:
    text = (await http.get("/metrics")).text
    prefix = f'scheduler_api_errors_total{{code="{code}"}} '
    return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)


class AsgiCall:
    """One HTTP request through `scheduler.asgi.application` in this process: what it sent back, and a way to
    make the client disconnect."""

    def __init__(self, method: str, path: str, key: str, query: str = "", body: bytes = b"") -> None:
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        self.body = body
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self) -> None:
        await asgi.application(self.scope, self.receive, self.send)

    def answer(self) -> tuple[int, dict[str, Any]]:
        start, body = self.sent
        return start["status"], json.loads(body["body"])


@pytest.fixture(autouse=True)
def no_background_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process calls of the application must not leave its background loop running on the test's event loop.
    monkeypatch.setattr(asgi, "ensure_started", lambda: None)


async def test_the_hot_routes_answer_without_a_django_request_cycle(write_key) -> None:
    started: list[object] = []

    def count(**kwargs: object) -> None:
        started.append(kwargs)

    request_started.connect(count)
    try:
        submit = AsgiCall("POST", "/api/v1/jobs", write_key, body=json.dumps(JOB).encode())
        await submit.run()
        status, job = submit.answer()
        read = AsgiCall("GET", f"/api/v1/jobs/{job['job_id']}", write_key)
        await read.run()
        history = AsgiCall("GET", "/api/v1/jobs", write_key)
        await history.run()
    finally:
        request_started.disconnect(count)

    assert (status, job["state"]) == (202, "SELECTING")
    assert read.answer()[1]["job_id"] == job["job_id"]
    assert lean_api.handles(submit.scope) and lean_api.handles(read.scope)
    # The history is not a hot route: it still goes through Django (one request_started).
    assert history.answer()[0] == 200
    assert len(started) == 1


async def test_a_client_that_disconnects_during_a_long_poll_ends_the_wait(write_key) -> None:
    submit = AsgiCall("POST", "/api/v1/jobs", write_key, body=json.dumps(JOB).encode())
    await submit.run()
    job_id = submit.answer()[1]["job_id"]
    poll = AsgiCall("GET", f"/api/v1/jobs/{job_id}", write_key, query="wait=30")
    polling = asyncio.create_task(poll.run())
    await asyncio.sleep(0.3)
    assert not polling.done()

    poll.gone.set()
    await asyncio.wait_for(polling, 5)

    assert poll.sent == []


async def test_an_idempotency_key_is_scoped_to_the_api_key_that_sent_it(write_key) -> None:
    submit = AsgiCall("POST", "/api/v1/jobs", write_key, body=json.dumps(JOB).encode())
    submit.scope["headers"].append((b"idempotency-key", b"same"))
    await submit.run()
    again = AsgiCall("POST", "/api/v1/jobs", write_key, body=json.dumps(JOB).encode())
    again.scope["headers"].append((b"idempotency-key", b"same"))
    await again.run()
    other_key = (await database_sync_to_async(ApiKey.issue)("other", [Scope.JOBS_WRITE]))[1]
    other = AsgiCall("POST", "/api/v1/jobs", other_key, body=json.dumps(JOB).encode())
    other.scope["headers"].append((b"idempotency-key", b"same"))
    await other.run()

    # The idempotency key is scoped to the caller: the same key from another API key is another job.
    assert submit.answer()[1]["job_id"] == again.answer()[1]["job_id"]
    assert other.answer()[1]["job_id"] != submit.answer()[1]["job_id"]


async def test_redis_down_is_a_503_dependency_down_with_retry_after_on_both_hot_routes(write_key, settings) -> None:
    own_redis = RedisProcess().start()
    try:
        point_at_redis(settings, own_redis.url)
        own_redis.kill()
        submit = AsgiCall("POST", "/api/v1/jobs", write_key, body=json.dumps(JOB).encode())
        await submit.run()
        read = AsgiCall("GET", "/api/v1/jobs/job-any", write_key)
        await read.run()
    finally:
        own_redis.stop()

    for call in (submit, read):
        start, _ = call.sent
        assert (b"retry-after", b"5") in start["headers"]
        assert call.answer() == (503, {"error": {"code": "DEPENDENCY_DOWN", "message": DEPENDENCY_DOWN_MESSAGE, "details": {"dependency": "redis"}}})
