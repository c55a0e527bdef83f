"""REST endpoints of the nodes app: the operators' live view and drain actions (`router`, at /api/v1/nodes),
and the HTTP node link (`link`, at /api/v1/node-link), PROTOCOL.md section 2.

The node link is the WebSocket consumer (nodes/consumers.py) without a socket: the same parsing, the same
services, the same `error` frames as answers, so a node sees one protocol whichever transport it uses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import Field as PydanticField
from pydantic import TypeAdapter

from access import throttle
from access.auth import actor_of, client_address, require
from access.models import Scope
from core import credentials, metrics, safe_json
from core.redis import UNAVAILABLE
from nodes import services, tokens
from nodes.models import NodeStatus
from nodes.registration import RegistrationRejected, register_node
from nodes.schemas import (
    DISPATCH_URL_PATTERN,
    AsrPartial,
    BadMessage,
    JobAck,
    JobResult,
    JobStarted,
    NodeError,
    NodeHeartbeat,
    NodeRegister,
    parse_node_message,
)
from nodes.services import Connection, NodeNotFound, TokenInfo

log = logging.getLogger(__name__)

router = Router(tags=["nodes"])
HTTP_CONN_ID = "http"


# --- live view and operator actions ------------------------------------------------------------------------


class NodeService(Schema):
    service_id: str
    type: str
    device: str = ""
    status: str = ""


class NodeOut(Schema):
    """PROTOCOL's live view of a node, plus a few fields operators ask for; never its token or channel."""

    node_id: str
    status: NodeStatus
    pool: str = Field(description="language-set pool: sorted semantic languages joined by '-'")
    languages: list[str]
    services: list[NodeService]
    max_concurrent_jobs: int
    running: int
    reserved: int
    last_heartbeat_at: datetime | None
    connected_instance: str = Field(
        description="scheduler instance holding the node's link; empty when offline"
    )
    resource_usage: dict[str, Any] | None
    health: str = Field(description="health state under a drain: registering, ready, degraded or offline")
    health_reason: str
    registered_at: datetime | None
    transport: str = Field(description="ws or http")
    drained_by: str
    version: str


class NodeList(Schema):
    count: int
    nodes: list[NodeOut]


class DrainIn(Schema):
    reason: str = Field("", max_length=200)


@router.get("", response=NodeList, auth=require(Scope.NODES_READ), summary="List nodes (live view)")
async def list_nodes(
    request: HttpRequest, status: NodeStatus | None = None, pool: str | None = None
) -> dict[str, Any]:
    nodes = await services.list_nodes(status=status.value if status else None, pool=pool)
    return {"count": len(nodes), "nodes": nodes}


@router.get("/{node_id}", response=NodeOut, auth=require(Scope.NODES_READ), summary="One node (live view)")
async def get_node(request: HttpRequest, node_id: str) -> dict[str, Any]:
    return await _node_or_404(node_id)


@router.post("/{node_id}/drain", response=NodeOut, auth=require(Scope.NODES_WRITE), summary="Drain a node")
async def drain_node(request: HttpRequest, node_id: str, payload: DrainIn | None = None) -> dict[str, Any]:
    """The node takes no new jobs; jobs in flight finish."""
    try:
        await services.drain_node(node_id, actor_of(request), payload.reason if payload else "")
    except NodeNotFound:
        raise _not_found(node_id) from None
    return await _node_or_404(node_id)


@router.post(
    "/{node_id}/undrain", response=NodeOut, auth=require(Scope.NODES_WRITE), summary="Undrain a node"
)
async def undrain_node(request: HttpRequest, node_id: str, payload: DrainIn | None = None) -> dict[str, Any]:
    try:
        await services.undrain_node(node_id, actor_of(request), payload.reason if payload else "")
    except NodeNotFound:
        raise _not_found(node_id) from None
    return await _node_or_404(node_id)


async def _node_or_404(node_id: str) -> dict[str, Any]:
    node = await services.get_node(node_id)
    if node is None:
        raise _not_found(node_id)
    return node


def _not_found(node_id: str) -> HttpError:
    return HttpError(404, f"no node {node_id[:64]!r}")


# --- HTTP node link ------------------------------------------------------------------------------------------


class NodeLinkError(Exception):
    """An answer of the node link that is the `error` frame the socket would send, with an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_after_s: int | None = None,
        token_id: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after_s = retry_after_s
        self.token_id = token_id

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.details:
            frame["details"] = self.details
        return frame


# Registration refusals by HTTP status; a code missing here is a client error too (400).
REJECTION_STATUS = {"NODE_ID_CONFLICT": 409, "UNAUTHORIZED": 401}


@dataclass(frozen=True)
class NodeCaller:
    """`request.auth` on the node link: the token presented, None in tokenless mode."""

    token: TokenInfo | None


class NodeTokenAuth(HttpBearer):
    """A node token as a Bearer header (not an API key), checked as the WebSocket handshake checks it."""

    def __call__(self, request: HttpRequest) -> Any:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented.strip():
            return self.authenticate(request, presented.strip())
        if settings.NODE_AUTH_REQUIRED:
            metrics.API_KEY_REJECTIONS.labels(reason="node_token_missing").inc()
            raise NodeLinkError(401, "UNAUTHORIZED", "send the node token as 'Authorization: Bearer <token>'")
        return self._tokenless()

    async def authenticate(self, request: HttpRequest, token: str) -> NodeCaller:
        address = client_address(request)
        try:
            await throttle.check("node_token", address)
        except throttle.Throttled as exc:
            raise NodeLinkError(
                429,
                "RATE_LIMITED",
                "too many wrong node tokens from this address; retry later",
                {"retry_after_s": exc.retry_after_s},
                retry_after_s=exc.retry_after_s,
            ) from None
        info = await tokens.authenticate_token(token)
        if info is None:
            # Also in tokenless mode: a token that was sent must be good, as on the socket.
            metrics.API_KEY_REJECTIONS.labels(reason="node_token_invalid").inc()
            await throttle.record_failure("node_token", address)
            raise NodeLinkError(
                401, "UNAUTHORIZED", "unknown, expired or revoked node token", token_id=credentials.public_id(token)
            )
        return NodeCaller(info)

    async def _tokenless(self) -> NodeCaller:
        return NodeCaller(None)


class ErrorFrame(Schema):
    type: Literal["error"]
    code: str
    message: str
    details: dict[str, Any] | None = None


class RegisterAck(Schema):
    type: Literal["node_register_ack"]
    node_id: str
    message: str
    status: str


class MessageAnswer(Schema):
    accepted: str = Field(description="the type of the message taken")
    node_id: str
    status: str | None = Field(None, description="the node's status after a heartbeat")


class NodeLinkRegister(NodeRegister):
    """The register body of the HTTP link: `node_register` plus where the scheduler POSTs frames."""

    type: Literal["node_register"] = "node_register"
    dispatch_url: str = Field(
        description="http(s) URL that takes job_assign, job_cancel and node_control POSTs",
        max_length=2048,
        pattern=DISPATCH_URL_PATTERN.pattern,
    )


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` substituted in place, fit for an operation's OpenAPI request body (Ninja
    moves `$defs` into the components only for bodies it validates itself; these we parse as the socket does)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {
                key: {"propertyName": value["propertyName"]} if key == "discriminator" else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_refs(schema)}}}
    }


# What /{node_id}/messages takes: every node message but node_register (that goes to /register).
LinkMessage = Annotated[
    NodeHeartbeat | JobAck | JobStarted | AsrPartial | JobResult | NodeError, PydanticField(discriminator="type")
]

link = Router(tags=["node link"], auth=NodeTokenAuth())
LINK_ERRORS = {
    400: ErrorFrame, 401: ErrorFrame, 409: ErrorFrame, 413: ErrorFrame, 429: ErrorFrame, 503: ErrorFrame,
}  # fmt: skip


@link.post(
    "/register",
    response={200: RegisterAck, **LINK_ERRORS},
    summary="Register a node over HTTP",
    openapi_extra=_body_doc(NodeLinkRegister.model_json_schema()),
)
async def link_register(request: HttpRequest) -> dict[str, Any]:
    """`node_register` fields plus `dispatch_url`; `type` may be omitted. Answers `node_register_ack`."""
    data = _read_json(request)
    if isinstance(data, dict):
        data.setdefault("type", "node_register")
    message = _parse(data)
    if not isinstance(message, NodeRegister):
        raise _bad_message(f"{message.type} goes to /node-link/{{node_id}}/messages", {"type": message.type})
    if not _is_http_url(message.dispatch_url):
        raise _bad_message(
            "invalid node_register",
            {"fields": [{"field": "dispatch_url", "problem": "required: an http:// or https:// URL"}]},
        )
    conn = Connection(
        token=_token(request), transport="http", conn_id=HTTP_CONN_ID, dispatch_url=message.dispatch_url
    )
    metrics.NODE_MESSAGES.labels(type=message.type).inc()
    with _as_frames():
        registration = await register_node(message, conn)
    return {
        "type": "node_register_ack",
        "node_id": registration.node_id,
        "message": "Node registered successfully",
        "status": registration.status,
    }


@link.post(
    "/{node_id}/messages",
    response={200: MessageAnswer, 202: MessageAnswer, **LINK_ERRORS},
    summary="Send a node message over HTTP",
    openapi_extra=_body_doc(TypeAdapter(LinkMessage).json_schema()),
)
async def link_message(request: HttpRequest, node_id: str) -> Status[dict[str, Any]]:
    """Any node → scheduler message but `node_register`. A heartbeat answers 200 with the node's status;
    409 `REGISTER_AGAIN` means the scheduler lost the node and it must register again."""
    message = _parse(_read_json(request))
    if isinstance(message, NodeRegister):
        raise _bad_message("node_register goes to /node-link/register", {"type": message.type})
    if message.node_id != node_id:
        raise _bad_message(
            "node_id does not match the URL",
            {"fields": [{"field": "node_id", "problem": "differs from the URL"}]},
        )
    conn = Connection(token=_token(request), transport="http", conn_id=HTTP_CONN_ID)
    metrics.NODE_MESSAGES.labels(type=message.type).inc()
    with _as_frames():
        node = await services.get_node(node_id)
        if node is None:
            raise _register_again(node_id)
        if node["token_id"] != conn.token_id:
            raise NodeLinkError(
                409,
                "NODE_ID_CONFLICT",
                "this node id belongs to a node of another token",
                {"node_id": node_id},
            )
        if isinstance(message, NodeHeartbeat):
            return Status(200, await _heartbeat(message, conn))
    if message.type == "node_error":
        services.report_node_error(message)
        return Status(200, {"accepted": message.type, "node_id": node_id})
    # Accepted (202) rather than refused, so a node's result sender does not retry them forever.
    await services.job_message(message)
    return Status(202, {"accepted": message.type, "node_id": node_id})


async def _heartbeat(message: NodeHeartbeat, conn: Connection) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = await services.record_heartbeat(message, conn)
    metrics.NODE_HEARTBEAT_SECONDS.observe(time.perf_counter() - started)
    if outcome.result == "unknown":
        # The socket re-registers from the register it kept; an HTTP node keeps its own, so it sends it again.
        raise _register_again(message.node_id)
    if outcome.result == "stale":
        raise NodeLinkError(
            409, "NODE_ID_CONFLICT", "a newer connection of this node took over", {"node_id": message.node_id}
        )
    if outcome.result == "revoked":
        raise NodeLinkError(401, "UNAUTHORIZED", "node token revoked or expired")
    return {"accepted": message.type, "node_id": message.node_id, "status": outcome.status}



def _token(request: HttpRequest) -> TokenInfo | None:
    caller: NodeCaller = request.auth  # type: ignore[attr-defined]
    return caller.token


def _register_again(node_id: str) -> NodeLinkError:
    return NodeLinkError(
        409,
        "REGISTER_AGAIN",
        "the scheduler does not know this node (any more): register again",
        {"node_id": node_id},
    )


@contextmanager
def _as_frames() -> Iterator[None]:
    """Domain and dependency errors become error frames, as in NodeConsumer.receive."""
    try:
        yield
    except RegistrationRejected as exc:
        raise NodeLinkError(REJECTION_STATUS.get(exc.code, 400), exc.code, exc.message, exc.details) from None
    except UNAVAILABLE:
        metrics.NODE_BAD_MESSAGES.labels(code="DEPENDENCY_DOWN").inc()
        raise NodeLinkError(
            503, "DEPENDENCY_DOWN", "the scheduler's state store is unavailable; retry later"
        ) from None


def _read_json(request: HttpRequest) -> Any:
    limit = settings.NODE_MAX_MESSAGE_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise _too_big(limit)
    # Not request.body: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is below the node protocol's limit, and
    # results carry audio.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise _too_big(limit)
    try:
        return safe_json.loads(body, settings.PEER_JSON_MAX_DEPTH)
    except safe_json.JsonRejected as exc:
        metrics.PEER_JSON_REJECTED.labels(where="node_link", reason=exc.reason).inc()
        if exc.reason == "syntax":
            raise _bad_message("the body is not valid JSON") from None
        raise _bad_message(f"the body was refused: {exc.message}", {"reason": exc.reason}) from None


def _too_big(limit: int) -> NodeLinkError:
    metrics.NODE_BAD_MESSAGES.labels(code="TOO_BIG").inc()
    return NodeLinkError(
        413, "MESSAGE_TOO_LARGE", f"a node message may hold at most {limit} bytes", {"limit": limit}
    )


def _parse(data: Any) -> Any:
    try:
        return parse_node_message(data)
    except BadMessage as exc:
        raise _bad_message(exc.message, exc.details) from None


def _bad_message(message: str, details: dict[str, Any] | None = None) -> NodeLinkError:
    metrics.NODE_BAD_MESSAGES.labels(code="BAD_MESSAGE").inc()
    return NodeLinkError(400, "BAD_MESSAGE", message, details)


def _is_http_url(url: str | None) -> bool:
    # The same pattern the OpenAPI document shows for dispatch_url, so the two cannot disagree.
    return bool(url) and DISPATCH_URL_PATTERN.fullmatch(url) is not None
