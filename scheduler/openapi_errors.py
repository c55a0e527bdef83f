"""The error answers of every operation in the OpenAPI document.

Ninja lists only the statuses a view declares, so the document showed 200 and 202 while the API answers
400, 401, 403, 404, 409, 413, 429 and 503 as docs/api.md promises: a client generated from the document, or
a schema-conformance check, met undocumented statuses. Each operation gets every error status the shared
error paths can produce (validation, auth, rate limits, body size, dependencies), in the body the API sends
them: `{"error": {...}}` on the REST API, the node protocol's `error` frame on the node link.
"""

from __future__ import annotations

from typing import Any

API_ERROR_SCHEMA = "ApiError"
ERROR_FRAME_SCHEMA = "ErrorFrame"

DESCRIPTIONS = {
    400: "Invalid request: `details.fields` name the fields (REST) or the frame's `details` do (node link)",
    401: "Missing, unknown, revoked or expired credential",
    403: "The credential lacks the scope, or a session failed the CSRF check",
    404: "No such object or route",
    409: "Conflict: idempotency key reused with another body, node id of another token, or register again",
    413: "Body above the size limit",
    429: "Too many failed authentications from this address; see Retry-After",
    500: "Internal error; it has been logged",
    503: "A dependency (Redis) is down, or no capacity; see Retry-After",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}

API_ERROR = {
    "title": API_ERROR_SCHEMA,
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "a stable code such as VALIDATION_ERROR"},
                "message": {"type": "string", "description": "human text"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
ERROR_FRAME = {
    "title": ERROR_FRAME_SCHEMA,
    "type": "object",
    "required": ["type", "code", "message"],
    "properties": {
        "type": {"type": "string", "const": "error"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "object", "additionalProperties": True},
    },
}


def add_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses (and their two body schemas) to `document`, in place; returns it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(API_ERROR_SCHEMA, API_ERROR)
    schemas.setdefault(ERROR_FRAME_SCHEMA, ERROR_FRAME)
    for path, operations in document.get("paths", {}).items():
        body = ERROR_FRAME_SCHEMA if "/node-link/" in path else API_ERROR_SCHEMA
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in DESCRIPTIONS.items():
                answer: dict[str, Any] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
                }
                if status in (429, 503):
                    answer["headers"] = RETRY_AFTER
                # A status the view declared itself keeps its own entry.
                responses.setdefault(str(status), answer)
    return document
