"""The REST API (Django Ninja): the apps' routers mounted under /api/v1/, and the one place where errors
become answers.

Every error is `{"error": {"code", "message", "details"}}` (PROTOCOL.md section 3), except on the HTTP node
link, which answers with the node protocol's own `error` frame. Each error answer is logged once and counted
in `API_ERRORS` by code.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import HttpError, ValidationError
from ninja.openapi.docs import render_template

from access.auth import AuthRefused
from core import metrics
from core.api_errors import ApiError
from core.redis import UNAVAILABLE
from jobs.api import router as jobs_router
from nodes.api import NodeLinkError
from nodes.api import link as node_link_router
from nodes.api import router as nodes_router
from pools.api import router as pools_router

log = logging.getLogger(__name__)

# Views name their one body schema parameter `payload`; Ninja puts that name in error locations, but it is not
# part of the JSON a client sends, so it is left out of the field names in 400 details.
BODY_PARAM = "payload"
# Seconds a client should wait before retrying while Redis is down: long enough not to hammer a recovering
# server, short enough that a restart of Redis (seconds) is not noticed for long.
RETRY_AFTER_S = 5
STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "TOO_LARGE",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}

DESCRIPTION = """
Control plane of the lingua speech-translation network.

**Auth:** `Authorization: Bearer <api key>` (scopes per endpoint), or a logged-in staff session in the browser.
The node link (`/node-link/`) takes node tokens instead.

**Errors:** `{"error": {"code": "SOME_CODE", "message": "human text", "details": {...}}}` with 400
(`VALIDATION_ERROR`, `details.fields` name the fields), 401 `UNAUTHORIZED`, 403 `FORBIDDEN`, 404 `NOT_FOUND`,
503 `DEPENDENCY_DOWN` (with `Retry-After`), 500 `INTERNAL_ERROR`. The node link answers errors with the node
protocol's frame instead: `{"type": "error", "code", "message", "details"?}`.
"""


class CsrfSwagger(Swagger):
    """Swagger UI that sends the CSRF token, so logged-in staff can try unsafe methods from the page: Ninja adds
    it only when the API-wide default auth is cookie-based, and ours is set per endpoint."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": json.dumps(self.settings, indent=1), "api": api, "add_csrf": True}
        return render_template(request, self.template, self.template_cdn, context)


api = NinjaAPI(
    title="lingua-scheduler",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    docs=CsrfSwagger(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)

api.add_router("/nodes", nodes_router)
api.add_router("/node-link", node_link_router)
api.add_router("/pools", pools_router)
api.add_router("/jobs", jobs_router)
# Later: api.add_router("/jobs", jobs_router).


def error_answer(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    body: dict[str, Any] | None = None,
    token_id: str = "",
    exc_info: BaseException | None = None,
) -> JsonResponse:
    """The one way an error leaves the API: logged once, counted, and 503s told when to come back."""
    metrics.API_ERRORS.labels(code=code).inc()
    log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "API answered %s to %s %s",
        status,
        request.method,
        request.path,
        exc_info=exc_info,
        extra={"event": "api_error", "code": code, "reason": message[:200], "token_id": token_id},
    )
    if body is None:
        body = {"error": {"code": code, "message": message, "details": details or {}}}
    response = JsonResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_S)
    # Django's request logger would log every 4xx/5xx a second time; this is its own "already logged" flag.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields = []
    for error in exc.errors[:20]:
        source, *path = [str(part) for part in error.get("loc", ())] or ["body"]
        if source == "body" and path[:1] == [BODY_PARAM]:
            path = path[1:]
        fields.append(
            {"field": ".".join(path) or source, "in": source, "problem": error.get("msg", "invalid")}
        )
    names = ", ".join(sorted({f["field"] for f in fields}))
    return error_answer(request, 400, "VALIDATION_ERROR", f"invalid request: {names}", {"fields": fields})


@api.exception_handler(AuthRefused)
def auth_refused(request: HttpRequest, exc: AuthRefused) -> HttpResponse:
    return error_answer(request, exc.status_code, exc.code, exc.message, exc.details, token_id=exc.key_id)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_answer(request, exc.status_code, STATUS_CODES.get(exc.status_code, "ERROR"), exc.message)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_answer(
        request,
        413,
        "TOO_LARGE",
        f"the body may hold at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
        {"limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
    )


@api.exception_handler(ApiError)
def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_answer(request, exc.status, exc.code, exc.message, exc.details)


@api.exception_handler(NodeLinkError)
def node_link_error(request: HttpRequest, exc: NodeLinkError) -> HttpResponse:
    return error_answer(request, exc.status, exc.code, exc.message, body=exc.frame())


def dependency_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    metrics.REDIS_ERRORS.labels(operation="api").inc()
    return error_answer(
        request,
        503,
        "DEPENDENCY_DOWN",
        "the scheduler's state store (Redis) is unavailable; retry later",
        {"dependency": "redis"},
    )


for _unavailable in UNAVAILABLE:
    api.add_exception_handler(_unavailable, dependency_down)


def database_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Reads that fall back to the mirror (a job Redis no longer holds, the history) need the database.
    return error_answer(
        request, 503, "DEPENDENCY_DOWN", "the scheduler's database is unavailable; retry later", {"dependency": "database"}
    )


for _unavailable in (OperationalError, InterfaceError):
    api.add_exception_handler(_unavailable, database_down)


@api.exception_handler(Exception)
def internal_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The traceback goes to the log only; the answer never carries it, whatever DEBUG says.
    return error_answer(request, 500, "INTERNAL_ERROR", "internal error; it has been logged", exc_info=exc)


def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Paths under /api/ that match no route answer in the API's error format, not Django's HTML 404."""
    return error_answer(request, 404, "NOT_FOUND", f"no API route {request.path}")
