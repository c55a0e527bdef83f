"""The REST API (Django Ninja): the apps' routers mounted under /api/v1/, and the one place where errors
become answers.

Every error is `{"error": {"code", "message", "details"}}` (PROTOCOL.md section 3), except on the HTTP node
link, which answers with the node protocol's own `error` frame. Each error answer is logged once and counted
in `API_ERRORS` by code.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import HttpError, ValidationError
from ninja.openapi.docs import render_template
from ninja.parser import Parser

from access.auth import AuthRefused
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
from jobs.api import router as jobs_router
from nodes.api import NodeLinkError
from nodes.api import link as node_link_router
from nodes.api import router as nodes_router
from pools.api import router as pools_router
from scheduler.openapi_errors import add_error_responses

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
(`VALIDATION_ERROR`, `details.fields` name the fields; `BAD_REQUEST` for a body that is not bounded JSON), 401
`UNAUTHORIZED`, 403 `FORBIDDEN`, 404 `NOT_FOUND`, 409 `CONFLICT`, 413 `TOO_LARGE`, 429 `RATE_LIMITED` (with
`Retry-After`), 503 `DEPENDENCY_DOWN` (with `Retry-After`), 500 `INTERNAL_ERROR`. The node link answers errors with the node
protocol's frame instead: `{"type": "error", "code", "message", "details"?}`.
"""


class CsrfSwagger(Swagger):
    """Swagger UI that sends the CSRF token, so logged-in staff can try unsafe methods from the page: Ninja adds
    it only when the API-wide default auth is cookie-based, and ours is set per endpoint."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {"swagger_settings": json.dumps(self.settings, indent=1), "api": api, "add_csrf": True}
        return render_template(request, self.template, self.template_cdn, context)


class BoundedParser(Parser):
    """REST bodies parsed as node frames are: bounded depth, finite numbers, integers a JSON reader keeps."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return safe_json.loads(request.body, settings.PEER_JSON_MAX_DEPTH)
        except safe_json.JsonRejected as exc:
            metrics.PEER_JSON_REJECTED.labels(where="rest", reason=exc.reason).inc()
            raise


class SchedulerApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        return add_error_responses(super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params))


api = SchedulerApi(
    parser=BoundedParser(),
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
    retry_after_s: int | None = None,
) -> JsonResponse:
    """The one way an error leaves the API: logged once, counted, and 503s told when to come back."""
    note_error(request.method or "", request.path, status, code, message, token_id=token_id, exc_info=exc_info)
    response = JsonResponse(body if body is not None else error_body(code, message, details), status=status)
    if retry_after_s is not None:
        response["Retry-After"] = str(retry_after_s)
    elif status == 503:
        response["Retry-After"] = str(RETRY_AFTER_S)
    # Django's request logger would log every 4xx/5xx a second time; this is its own "already logged" flag.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    message, details = validation_details(exc.errors)
    return error_answer(request, 400, "VALIDATION_ERROR", message, details)


@api.exception_handler(AuthRefused)
def auth_refused(request: HttpRequest, exc: AuthRefused) -> HttpResponse:
    return error_answer(
        request, exc.status_code, exc.code, exc.message, exc.details, token_id=exc.key_id, retry_after_s=exc.retry_after_s
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, safe_json.JsonRejected):
        # Ninja wraps whatever the parser raised as "Cannot parse request body"; say what was wrong.
        reason = exc.__cause__
        return error_answer(
            request, 400, "BAD_REQUEST", f"the body was refused: {reason.message}", {"reason": reason.reason}
        )
    return error_answer(request, exc.status_code, STATUS_CODES.get(exc.status_code, "ERROR"), exc.message)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_answer(request, 413, "TOO_LARGE", *too_large_message())


@api.exception_handler(ApiError)
def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_answer(request, exc.status, exc.code, exc.message, exc.details)


@api.exception_handler(NodeLinkError)
def node_link_error(request: HttpRequest, exc: NodeLinkError) -> HttpResponse:
    return error_answer(
        request, exc.status, exc.code, exc.message, body=exc.frame(), token_id=exc.token_id, retry_after_s=exc.retry_after_s
    )


def dependency_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    metrics.REDIS_ERRORS.labels(operation="api").inc()
    return error_answer(request, 503, "DEPENDENCY_DOWN", DEPENDENCY_DOWN_MESSAGE, {"dependency": "redis"})


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
    return error_answer(request, 500, "INTERNAL_ERROR", INTERNAL_ERROR_MESSAGE, exc_info=exc)


def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Paths under /api/ that match no route answer in the API's error format, not Django's HTML 404."""
    return error_answer(request, 404, "NOT_FOUND", f"no API route {request.path}")
