"""How the REST API says no: an error with its own code raised by views, and the pieces every error answer is
made of (its body, its one log line and count, the wording of validation errors), shared by the Ninja API
(`scheduler/api.py`) and the lean job routes (`jobs/lean_api.py`), which answer without Django."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from core import metrics

# The API's log lines keep the name operators filter on, whichever of the two answered.
log = logging.getLogger("scheduler.api")

# Views name their one body schema parameter `payload`; Ninja puts that name in error locations, but it is not
# part of the JSON a client sends, so it is left out of the field names in 400 details.
BODY_PARAM = "payload"
# Seconds a client should wait before retrying while Redis is down: long enough not to hammer a recovering
# server, short enough that a restart of Redis (seconds) is not noticed for long.
RETRY_AFTER_S = 5
DEPENDENCY_DOWN_MESSAGE = "the scheduler's state store (Redis) is unavailable; retry later"
INTERNAL_ERROR_MESSAGE = "internal error; it has been logged"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def note_error(
    method: str, path: str, status: int, code: str, message: str, *, token_id: str = "", exc_info: BaseException | None = None
) -> None:
    """Count and log one error answer (shared with the lean job routes, which answer without Django)."""
    metrics.API_ERRORS.labels(code=code).inc()
    log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "API answered %s to %s %s",
        status,
        method,
        path,
        exc_info=exc_info,
        extra={"event": "api_error", "code": code, "reason": message[:200], "token_id": token_id},
    )


def validation_details(errors: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The message and details of a 400 VALIDATION_ERROR from pydantic's errors, located as Ninja locates
    them (`("body", "payload", field...)`, `("query", name)`)."""
    fields = []
    for error in errors[:20]:
        source, *path = [str(part) for part in error.get("loc", ())] or ["body"]
        if source == "body" and path[:1] == [BODY_PARAM]:
            path = path[1:]
        fields.append({"field": ".".join(path) or source, "in": source, "problem": error.get("msg", "invalid")})
    names = ", ".join(sorted({f["field"] for f in fields}))
    return f"invalid request: {names}", {"fields": fields}


def too_large_message() -> tuple[str, dict[str, Any]]:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"the body may hold at most {limit} bytes", {"limit": limit}
