"""The two hot job endpoints, `POST /api/v1/jobs` and `GET /api/v1/jobs/{job_id}`, for callers with a Bearer
API key, answered as a plain ASGI app in front of Django (`scheduler/asgi.py` routes them here).

Every job costs one of each (the submission with `?wait`, and the long-poll that follows when the job takes
longer). Through Django and Ninja each request paid for a request object, URL resolution, the
request_started / request_finished signals (two hops to the sync thread, whose receivers close database
connections this path never opens), Ninja's signature machinery and its renderer: about a fifth of the
web process's CPU under job load (docs/performance.md). Here the same steps run directly and nothing else:

- auth: `access.auth.key_for_header` (the same key cache, refusals and metrics as the Ninja auth);
- validation: the same `JobIn` schema, errors located and worded as Ninja words them;
- the answer: `jobs.api.submit_answer` / `job_answer`, the very functions the Ninja views call;
- errors: the same shapes, log lines and `scheduler_api_errors_total` counts (`core.api_errors.note_error`).

The Ninja routes stay: they serve staff sessions (the interactive docs) and define the OpenAPI document,
and the two routes answer alike (`tests/api/test_lean_job_routes.py` compares them). Anything this module
does not recognise exactly (another method, a trailing slash, a cookie instead of a key) goes to Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError

from access.auth import AuthRefused, key_for_header
from access.models import Scope
from core import metrics, safe_json
from core.api_errors import (
    DEPENDENCY_DOWN_MESSAGE,
    INTERNAL_ERROR_MESSAGE,
    RETRY_AFTER_S,
    ApiError,
    error_body,
    note_error,
    too_large_message,
    validation_details,
)
from core.redis import UNAVAILABLE
from jobs.api import JobIn, job_answer, submit_answer

JOBS_PATH = "/api/v1/jobs"
JOB_PREFIX = JOBS_PATH + "/"
# Ninja's renderer says so for its answers; Django's JsonResponse (errors) says plain application/json.
JSON_OK = b"application/json; charset=utf-8"
JSON_ERROR = b"application/json"
# Ninja's message for a body that is not JSON (outside DEBUG).

Scope_ = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Answer(Exception):
    """An error answer, raised from anywhere in the request and rendered in one place."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None, token_id: str = "",
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.token_id = status, code, message, details, token_id
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    pass


def handles(scope: Scope_) -> bool:
    """Whether this request is one of the two hot endpoints (the caller has checked for a Bearer header)."""
    path = scope["path"]
    if scope["method"] == "POST":
        return path == JOBS_PATH
    if scope["method"] == "GET" and path.startswith(JOB_PREFIX):
        job_id = path[len(JOB_PREFIX) :]
        return bool(job_id) and "/" not in job_id
    return False


async def app(scope: Scope_, receive: Receive, send: Send) -> None:
    submitting = scope["method"] == "POST"
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    # Django's QueryDict gives the last of repeated values.
    wait = query["wait"][-1] if "wait" in query else None
    try:
        body = await _read_body(receive) if submitting else b""
    except ClientGone:
        return
    try:
        key = await _authenticate(scope, Scope.JOBS_WRITE if submitting else Scope.JOBS_READ)
        if submitting:
            answer = _answer_when_done(receive, _submit(scope, body, wait, f"apikey:{key.id}"), waits=bool(wait))
        else:
            answer = _answer_when_done(receive, _read(scope, wait), waits=bool(wait))
        status, payload = await answer
    except ClientGone:
        return
    except Answer as exc:
        await _send_error(scope, send, exc)
        return
    except ApiError as exc:
        await _send_error(scope, send, Answer(exc.status, exc.code, exc.message, exc.details))
        return
    except UNAVAILABLE:
        metrics.REDIS_ERRORS.labels(operation="api").inc()
        await _send_error(scope, send, Answer(503, "DEPENDENCY_DOWN", DEPENDENCY_DOWN_MESSAGE, {"dependency": "redis"}))
        return
    except (OperationalError, InterfaceError):
        # As scheduler/api.py answers it: a key check or a read from the mirror needed the database.
        message = "the scheduler's database is unavailable; retry later"
        await _send_error(scope, send, Answer(503, "DEPENDENCY_DOWN", message, {"dependency": "database"}))
        return
    except Exception as exc:
        # The traceback goes to the log only, as on every other route.
        note_error(scope["method"], scope["path"], 500, "INTERNAL_ERROR", INTERNAL_ERROR_MESSAGE, exc_info=exc)
        await _send(send, 500, JSON_ERROR, error_body("INTERNAL_ERROR", INTERNAL_ERROR_MESSAGE))
        return
    await _send(send, status, JSON_OK, payload)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None once it is larger than Django would accept (answered 413 after auth, as
    Ninja answers it: Django reads the body only when the view asks for it)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _authenticate(scope: Scope_, needed: Scope) -> Any:
    header = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"), "")
    # The peer's address as Django would see it (REMOTE_ADDR), for the failed-key limit.
    address = str((scope.get("client") or ("",))[0] or "")
    try:
        return await key_for_header(header, needed, address)
    except AuthRefused as exc:
        raise Answer(exc.status_code, exc.code, exc.message, exc.details, exc.key_id, exc.retry_after_s) from None


async def _submit(scope: Scope_, body: bytes | None, wait: str | None, actor: str) -> tuple[int, dict[str, Any]]:
    if body is None:
        raise Answer(413, "TOO_LARGE", *too_large_message())
    payload = _validated(body)
    idempotency_key = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"idempotency-key"), "")
    return await submit_answer(payload, wait, idempotency_key, actor)


async def _read(scope: Scope_, wait: str | None) -> tuple[int, dict[str, Any]]:
    return 200, await job_answer(scope["path"][len(JOB_PREFIX) :], wait)


def _validated(body: bytes) -> JobIn:
    if not body:
        # Ninja reports a missing body as its body parameter missing as a whole.
        raise Answer(400, "VALIDATION_ERROR", *validation_details([{"loc": ("body",), "msg": "Field required"}]))
    try:
        # Bounded as on every other route (scheduler/api.py BoundedParser), with the same answer.
        data = safe_json.loads(body, settings.PEER_JSON_MAX_DEPTH)
    except safe_json.JsonRejected as exc:
        metrics.PEER_JSON_REJECTED.labels(where="rest", reason=exc.reason).inc()
        raise Answer(400, "BAD_REQUEST", f"the body was refused: {exc.message}", {"reason": exc.reason}) from None
    try:
        return JobIn.model_validate(data)
    except ValidationError as exc:
        # Located as Ninja locates the errors of its one body parameter.
        errors = [{**error, "loc": ("body", "payload", *error["loc"])} for error in exc.errors(include_url=False)]
        message, details = validation_details(errors)
        raise Answer(400, "VALIDATION_ERROR", message, details) from None


async def _answer_when_done(receive: Receive, work: Awaitable[tuple[int, dict[str, Any]]], *, waits: bool) -> tuple[int, dict[str, Any]]:
    """Run `work`; with a long-poll, stop it when the client disconnects (as Django does), so a gone client's
    wait does not hold its waiter for up to 30 s."""
    if not waits:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_error(scope: Scope_, send: Send, exc: Answer) -> None:
    note_error(scope["method"], scope["path"], exc.status, exc.code, exc.message, token_id=exc.token_id)
    retry_after = exc.retry_after_s if exc.retry_after_s is not None else RETRY_AFTER_S if exc.status == 503 else None
    extra = [(b"retry-after", str(retry_after).encode())] if retry_after is not None else []
    await _send(send, exc.status, JSON_ERROR, error_body(exc.code, exc.message, exc.details), extra)


async def _send(send: Send, status: int, content_type: bytes, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
