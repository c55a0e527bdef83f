"""Node lifecycle: the one way in for consumers, the HTTP link, the REST API, the admin and Celery.

Live state lives in Redis and changes only through the scripts in core/lua/; each change of status
becomes an audit entry, a metric and a `node_status` frame to the node.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from core import audit, metrics, scripts
from core.redis import PIPELINE_CHUNK, get_redis, keys, read_chunked
from nodes import connections, reactions
from nodes.health import check_heartbeat, pool_name, ready_services
from nodes.models import Node, NodeEvent, NodeStatus, NodeToken
from nodes.schemas import AsrPartial, JobAck, JobResult, JobStarted, NodeError, NodeHeartbeat, NodeRegister

log = logging.getLogger(__name__)

NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CLOSE_SUPERSEDED = 4409
CLOSE_TOKEN_REVOKED = 4403
CLOSE_DISCONNECTED = 4000
# How long an offline node stays listed (and its keys kept) before it is forgotten.
OFFLINE_RETENTION_S = 24 * 3600
SYSTEM = "system"
LAST_USED_RESOLUTION = timedelta(minutes=1)
# node_error codes counted under their own label; anything else counts as "other" (labels stay bounded).
KNOWN_NODE_ERROR_CODES = frozenset(
    {"MODEL_NOT_AVAILABLE", "PROCESSING_ERROR", "GPU_ERROR", "OUT_OF_MEMORY", "SERVICE_ERROR"}
)


class RegistrationRejected(Exception):
    """Registration refused with one of PROTOCOL's error codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class NodeNotFound(Exception):
    pass


@dataclass(frozen=True)
class TokenInfo:
    """What the live path needs to know of a node token, without touching the ORM again."""

    id: str
    node_id: str = ""
    expires_at_ms: int = 0


@dataclass
class Connection:
    """One node link: a WebSocket (conn id unique per socket) or the HTTP link (conn id "http")."""

    token: TokenInfo | None
    transport: str = "ws"
    channel: str = ""
    conn_id: str = field(default_factory=lambda: secrets.token_hex(8))
    dispatch_url: str = ""

    @property
    def token_id(self) -> str:
        return self.token.id if self.token else ""


@dataclass(frozen=True)
class Registration:
    node_id: str
    status: str


@dataclass(frozen=True)
class HeartbeatOutcome:
    result: str  # ok | stale | revoked | unknown
    status: str = ""


# --- tokens -------------------------------------------------------------------------------------------------


async def authenticate_token(presented: str | None) -> TokenInfo | None:
    """The token a node presents, checked against the database (a read); the last-use stamp is written
    in the background, so a busy database never slows a handshake past the server's connect timeout."""
    if not presented:
        return None
    token = await database_sync_to_async(NodeToken.authenticate)(presented)
    if token is None:
        return None
    now = timezone.now()
    # Minute precision is plenty for spotting unused tokens and spares HTTP nodes a write per message.
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        connections.spawn(
            database_sync_to_async(NodeToken.objects.filter(pk=token.pk).update)(last_used_at=now)
        )
    return TokenInfo(id=token.id, node_id=token.node_id, expires_at_ms=token.expires_at_ms)


async def revoke_token(token_id: str, actor: str) -> int:
    """Revoke a token and close every live socket that uses it; returns how many nodes were told.

    Steps: mark it revoked in the database (new handshakes fail), flag every live node of the token in
    Redis (their next heartbeat closes the socket, covering a lost channel message), then tell the sockets.
    """
    updated = await database_sync_to_async(
        lambda: NodeToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
    )()
    if updated:
        await audit.record(
            "node", type="event", node_id="", kind=NodeEvent.Kind.TOKEN_REVOKED, actor=actor, at=_now_ms(),
            details={"token_id": token_id},
        )
    # If Redis is down this raises after the database already refuses the token; running it again
    # finishes the job (every step is idempotent). The flag on each node makes its next heartbeat close
    # the socket even if the close message below is lost (the channel layer is at-most-once).
    told = 0
    for node in await list_nodes():
        if node["token_id"] == token_id:
            await get_redis().hset(keys().node_meta(node["node_id"]), "token_revoked", "1")
            if node["channel"]:
                await connections.close_connection(node["channel"], CLOSE_TOKEN_REVOKED)
                told += 1
    log.info("node token revoked", extra={"event": "token_revoked", "token_id": token_id})
    return told


# --- registration --------------------------------------------------------------------------------------------


def _mint_node_id() -> str:
    return f"node-{secrets.token_hex(4).upper()}"


def _validate_registration(message: NodeRegister, conn: Connection) -> str | None:
    """Checks in PROTOCOL's order; returns the node id the node asked for (None: mint one)."""
    if message.capability_schema_version is not None and message.capability_schema_version != settings.NODE_CAPABILITY_SCHEMA_VERSION:
        raise RegistrationRejected(
            "INVALID_CAPABILITY_SCHEMA",
            f"capability_schema_version must be {settings.NODE_CAPABILITY_SCHEMA_VERSION!r}",
            {"received": message.capability_schema_version},
        )
    if not message.hardware.gpus and not settings.NODE_ALLOW_CPU_ONLY:
        raise RegistrationRejected("NO_GPU_AVAILABLE", "a node must report at least one GPU in hardware.gpus")
    requested = message.node_id or None
    if requested is not None and not NODE_ID_RE.match(requested):
        raise RegistrationRejected(
            "BAD_MESSAGE", "node_id may hold only letters, digits and . _ : - (at most 64)", {"field": "node_id"}
        )
    bound = conn.token.node_id if conn.token else ""
    if bound:
        if requested is not None and requested != bound:
            raise RegistrationRejected(
                "NODE_ID_CONFLICT", "this token is bound to another node id", {"node_id": requested}
            )
        return bound
    return requested


def _capability_fields(message: NodeRegister | NodeHeartbeat) -> dict[str, str]:
    """One hash field per service type: readiness plus the installed services of that type."""
    services: dict[str, list[dict[str, Any]]] = {}
    for service in message.installed_services:
        services.setdefault(service.type, []).append(service.model_dump())
    result = {}
    for cap in message.capability_by_type:
        result[cap.type] = json.dumps({"ready": cap.ready, "reason": cap.reason, "services": services.pop(cap.type, [])})
    for kind, items in services.items():
        result[kind] = json.dumps({"ready": False, "reason": "not_reported", "services": items})
    return result


def _language_fields(message: NodeRegister | NodeHeartbeat) -> dict[str, str]:
    caps = message.language_capabilities
    if caps is None:
        return {}
    languages = sorted({lang.strip().lower() for lang in caps.semantic_languages if lang.strip()})
    return {
        "languages": json.dumps(languages),
        "pool": pool_name(languages),
        "language_capabilities": caps.model_dump_json(),
    }


def _services_summary(message: NodeRegister | NodeHeartbeat) -> str:
    return json.dumps(
        [
            {"service_id": s.service_id, "type": s.type, "device": s.device, "status": s.status}
            for s in message.installed_services
        ]
    )


async def register_node(message: NodeRegister, conn: Connection) -> Registration:
    """Register a node (first connect or reconnect).

    Steps: validate schema version, GPU and id; run the register script (id ownership checked against
    the token in the same atomic step; a fresh id is re-minted on the rare collision); index the node and
    its deadline; close the older connection of the same node (4409); record audit and metrics.
    """
    try:
        requested = _validate_registration(message, conn)
        if requested is not None:
            await _check_id_owner_in_database(requested, conn.token_id)
    except RegistrationRejected as exc:
        await _rejected(exc, message.node_id, conn)
        raise

    max_jobs = message.max_concurrent_jobs or settings.NODE_DEFAULT_MAX_CONCURRENT_JOBS
    meta = {
        "instance": settings.INSTANCE_ID,
        "channel": conn.channel,
        "transport": conn.transport,
        "dispatch_url": conn.dispatch_url,
        "version": message.version,
        "platform": message.platform,
        "hardware": message.hardware.model_dump_json(),
        "services": _services_summary(message),
        "accept_public_jobs": "1" if message.accept_public_jobs else "0",
        "supports_job_ack": "1" if message.supports_job_ack else "0",
        "token_expires_at": str(conn.token.expires_at_ms if conn.token else 0),
        "languages": "[]",
        "pool": "",
        **_language_fields(message),
    }
    capability_fields = _capability_fields(message)
    k = keys()
    for _ in range(8):
        node_id = requested or _mint_node_id()
        result = await scripts.run(
            "node_register",
            k.node_keys(node_id),
            [
                node_id, conn.token_id, conn.conn_id, "0" if requested else "1",
                _ms(settings.NODE_HEARTBEAT_TIMEOUT_S), _ms(settings.NODE_WARMUP_TIMEOUT_S),
                settings.NODE_CAPABILITIES_TTL_S, max_jobs, json.dumps(meta), json.dumps(capability_fields),
            ],
        )
        if result[0] != "EXISTS":
            break
    else:
        raise RuntimeError("could not mint a free node id")
    if result[0] == "CONFLICT":
        exc = RegistrationRejected("NODE_ID_CONFLICT", "this node id belongs to a node of another token", {"node_id": node_id})
        await _rejected(exc, node_id, conn)
        raise exc

    _, old_conn, old_channel, old_status, new_status, deadline, now, member_of = result
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.sadd(k.nodes_all, node_id)
        pipe.zadd(k.node_deadlines, {node_id: int(deadline)})
        await pipe.execute()
    languages = json.loads(meta["languages"])
    pools = reactions.pools()
    await pools.place_node(
        node_id,
        member=pools.wants_membership(new_status, ready_services(message.capability_by_type), languages),
        languages=languages,
        member_of=member_of,
        actor=settings.INSTANCE_ID,
    )
    superseded = bool(old_conn) and old_conn != conn.conn_id
    if superseded and old_channel:
        await connections.close_connection(old_channel, CLOSE_SUPERSEDED, old_conn)
    if superseded:
        await reactions.jobs().node_reconnected(node_id)

    metrics.NODE_REGISTRATIONS.labels(result="ok").inc()
    log.info(
        "node registered",
        extra={"event": "node_registered", "node_id": node_id, "token_id": conn.token_id, "conn": conn.conn_id},
    )
    snapshot = {
        "token_id": conn.token_id,
        "transport": conn.transport,
        "version": message.version,
        "platform": message.platform,
        "languages": json.loads(meta["languages"]),
        "pool": meta["pool"],
        "capabilities": {
            "hardware": message.hardware.model_dump(),
            "capability_by_type": [c.model_dump() for c in message.capability_by_type],
            "installed_services": [s.model_dump() for s in message.installed_services],
            "language_capabilities": message.language_capabilities.model_dump() if message.language_capabilities else None,
            "max_concurrent_jobs": max_jobs,
            "supports_job_ack": message.supports_job_ack,
        },
    }
    await audit.record(
        "node", type="event", node_id=node_id, kind=NodeEvent.Kind.REGISTERED,
        to=new_status, **{"from": old_status}, actor=node_id, instance=settings.INSTANCE_ID, at=int(now),
        reason="reconnect" if old_status else "first_registration", snapshot=snapshot,
        details={"superseded": superseded, "transport": conn.transport},
    )
    if old_status != new_status and old_status:
        metrics.NODE_STATUS_CHANGES.labels(from_status=old_status, to_status=new_status).inc()
    return Registration(node_id=node_id, status=new_status)


async def _check_id_owner_in_database(node_id: str, token_id: str) -> None:
    """Redis may have lost the node (restart, flush): the audit mirror still knows whose id it is."""

    def owner() -> str | None:
        return Node.objects.filter(node_id=node_id).values_list("token_id", flat=True).first()

    stored = await database_sync_to_async(owner)()
    if stored is not None and stored != (token_id or None):
        raise RegistrationRejected("NODE_ID_CONFLICT", "this node id belongs to a node of another token", {"node_id": node_id})


async def _rejected(exc: RegistrationRejected, claimed: str | None, conn: Connection) -> None:
    metrics.NODE_REGISTRATIONS.labels(result=exc.code).inc()
    log.warning(
        "node registration rejected",
        extra={"event": "node_rejected", "code": exc.code, "node_id": claimed or "", "token_id": conn.token_id},
    )
    await audit.record(
        "node", type="event", node_id="", kind=NodeEvent.Kind.REJECTED, reason=exc.code, actor=claimed or "",
        instance=settings.INSTANCE_ID, at=_now_ms(), details={"claimed_node_id": claimed, "message": exc.message, "token_id": conn.token_id},
    )


# --- heartbeats and liveness -------------------------------------------------------------------------------------


async def record_heartbeat(message: NodeHeartbeat, conn: Connection) -> HeartbeatOutcome:
    """Apply a heartbeat of the node registered on `conn`.

    Returns "stale" when a newer connection owns the node, "revoked" when the token was revoked or expired,
    "unknown" when Redis no longer knows the node (the caller re-registers it from what it sent before).
    """
    semantic = message.language_capabilities.semantic_languages if message.language_capabilities else None
    if semantic is None:
        semantic = await _stored_languages(message.node_id)
    check = check_heartbeat(
        message.capability_by_type, semantic, message.resource_usage, settings.NODE_RESOURCE_THRESHOLD_PERCENT
    )
    meta = {
        "resource_usage": message.resource_usage.model_dump_json(),
        "reported_running": str(message.resource_usage.running_jobs),
        "services": _services_summary(message),
        "node_timestamp": str(message.timestamp),
        **_language_fields(message),
    }
    result = await scripts.run(
        "node_heartbeat",
        keys().node_keys(message.node_id),
        [
            conn.conn_id, conn.token_id, "1" if check.ok else ("load" if check.load_only else "0"),
            _ms(settings.NODE_HEARTBEAT_TIMEOUT_S), _ms(settings.NODE_WARMUP_TIMEOUT_S),
            settings.NODE_HEALTH_CONSECUTIVE_FAILURES, settings.NODE_HEALTH_WINDOW,
            settings.NODE_HEALTH_WINDOW_FAILURES, settings.NODE_CAPABILITIES_TTL_S,
            json.dumps(meta), json.dumps(_capability_fields(message)), check.reason,
        ],
    )
    if result[0] in ("UNKNOWN", "OFFLINE"):
        metrics.NODE_HEARTBEATS.labels(result=result[0].lower()).inc()
        return HeartbeatOutcome("unknown")
    if result[0] == "STALE":
        metrics.NODE_HEARTBEATS.labels(result="stale").inc()
        return HeartbeatOutcome("stale")
    if result[0] == "REVOKED":
        metrics.NODE_HEARTBEATS.labels(result="revoked").inc()
        return HeartbeatOutcome("revoked")
    _, old_status, new_status, _deadline, now, member_of = result
    pools = reactions.pools()
    await pools.place_node(
        message.node_id,
        member=pools.wants_membership(new_status, ready_services(message.capability_by_type), semantic),
        languages=semantic,
        member_of=member_of,
        actor=settings.INSTANCE_ID,
    )
    metrics.NODE_HEARTBEATS.labels(result="ok" if check.ok else "failed_check").inc()
    if old_status != new_status:
        reason = "heartbeat_under_load" if new_status == NodeStatus.READY and not check.ok else check.reason or "heartbeat"
        await status_changed(message.node_id, old_status, new_status, reason, SYSTEM, int(now), conn.channel)
    elif int(now) % 60_000 < _ms(settings.NODE_HEARTBEAT_INTERVAL_S):
        # Keep the audit mirror's last-seen roughly fresh without one database write per heartbeat.
        await audit.record("node", type="seen", node_id=message.node_id, at=int(now))
    return HeartbeatOutcome("ok", new_status)


async def _stored_languages(node_id: str) -> list[str]:
    raw = await get_redis().hget(keys().node_meta(node_id), "languages")
    return json.loads(raw) if raw else []


async def node_disconnected(node_id: str, conn: Connection, reason: str) -> None:
    """The socket closed: the node is offline unless a newer connection already took it over."""
    result = await scripts.run(
        "node_offline", [keys().node_meta(node_id), keys().node_cap(node_id)], [conn.conn_id, reason, OFFLINE_RETENTION_S]
    )
    if result[0] == "OK":
        await _mark_offline_indexed(node_id)
        await status_changed(node_id, result[1], result[2], reason, SYSTEM, _now_ms(), "")
        await audit.record(
            "node", type="event", node_id=node_id, kind=NodeEvent.Kind.DISCONNECTED, reason=reason, actor=SYSTEM,
            instance=settings.INSTANCE_ID, at=_now_ms(),
        )
    elif result[0] == "STALE":
        await audit.record(
            "node", type="event", node_id=node_id, kind=NodeEvent.Kind.SUPERSEDED, reason=reason, actor=SYSTEM,
            instance=settings.INSTANCE_ID, at=_now_ms(), details={"conn": conn.conn_id},
        )


async def _mark_offline_indexed(node_id: str) -> None:
    # Offline nodes stay in the deadline index until their keys expire, so the sweep can forget them.
    await get_redis().zadd(keys().node_deadlines, {node_id: _now_ms() + OFFLINE_RETENTION_S * 1000 + 1000})


async def sweep_deadlines(limit: int = 1000) -> int:
    """Fire every node deadline that has passed (by Redis's clock); returns how many nodes changed status.

    Safe from any instance and from several at once: each node is judged by its own script, and the index
    is only moved by compare-and-set.
    """
    client = get_redis()
    k = keys()
    seconds, micros = await client.time()
    now = seconds * 1000 + micros // 1000
    due = await client.zrangebyscore(k.node_deadlines, "-inf", now, start=0, num=limit, withscores=True)
    changed = 0
    for node_id, score in due:
        result = await scripts.run(
            "node_sweep",
            [k.node_meta(node_id), k.node_cap(node_id)],
            [_ms(settings.NODE_HEARTBEAT_TIMEOUT_S), _ms(settings.NODE_WARMUP_TIMEOUT_S), OFFLINE_RETENTION_S],
        )
        outcome = result[0]
        if outcome == "GONE":
            if await scripts.run("deadline_settle", [k.node_deadlines], [node_id, score, ""]):
                await client.srem(k.nodes_all, node_id)
            continue
        if outcome == "OFFLINE":
            await scripts.run("deadline_settle", [k.node_deadlines], [node_id, score, now + OFFLINE_RETENTION_S * 1000 + 1000])
            continue
        if outcome == "ALIVE":
            await scripts.run("deadline_settle", [k.node_deadlines], [node_id, score, int(result[1])])
            continue
        _, old_status, new_status, next_deadline = result
        next_score = int(next_deadline) if next_deadline else now + OFFLINE_RETENTION_S * 1000 + 1000
        await scripts.run("deadline_settle", [k.node_deadlines], [node_id, score, next_score])
        reason = "heartbeat_timeout" if new_status == NodeStatus.OFFLINE else "warmup_timeout"
        channel = "" if new_status == NodeStatus.OFFLINE else await client.hget(k.node_meta(node_id), "channel") or ""
        await status_changed(node_id, old_status, new_status, reason, SYSTEM, now, channel)
        changed += 1
    return changed


async def status_changed(
    node_id: str, old: str, new: str, reason: str, actor: str, at_ms: int, channel: str, *, record_event: bool = True
) -> None:
    """Every status change: a metric, an audit event (unless the caller recorded a more specific one), a log
    line and a `node_status` frame to the node."""
    metrics.NODE_STATUS_CHANGES.labels(from_status=old or "none", to_status=new).inc()
    log.info(
        "node status changed",
        extra={"event": "node_status", "node_id": node_id, "reason": f"{old}->{new} ({reason})"},
    )
    if new in (NodeStatus.OFFLINE, NodeStatus.DRAINING) or old in (NodeStatus.OFFLINE, NodeStatus.DRAINING):
        # Leaving or re-entering service changes pool membership; heartbeats handle the other cases.
        await reactions.pools().resync_node(node_id, actor)
    if new == NodeStatus.OFFLINE:
        # Its attempts go elsewhere now rather than at their timeouts (a drained node finishes its own).
        await reactions.jobs().node_went_offline(node_id)
    if record_event:
        await audit.record(
            "node", type="event", node_id=node_id, kind=NodeEvent.Kind.STATUS_CHANGED, to=new, reason=reason,
            actor=actor, instance=settings.INSTANCE_ID, at=at_ms, **{"from": old},
        )
    frame = {"type": "node_status", "node_id": node_id, "status": new, "reason": reason}
    if channel:
        await connections.send_frame(channel, frame)
    elif new != NodeStatus.OFFLINE:
        await _send_to_http_node(node_id, frame)


def report_node_error(message: NodeError) -> None:
    """A node's own error report: logged and counted, nothing else (PROTOCOL)."""
    code = message.code if message.code in KNOWN_NODE_ERROR_CODES else "other"
    metrics.NODE_ERRORS_REPORTED.labels(code=code).inc()
    log.warning(
        "node reported an error",
        extra={"event": "node_error", "node_id": message.node_id, "code": message.code[:64], "reason": message.message[:200]},
    )


async def job_message(message: JobAck | JobStarted | AsrPartial | JobResult) -> None:
    """A node's message about a job: handed to the job path, which ignores it unless the node holds the
    job on that attempt (PROTOCOL)."""
    await reactions.jobs().on_message[message.type](message, message.node_id)


# --- operator actions --------------------------------------------------------------------------------------------


async def drain_node(node_id: str, actor: str, reason: str = "") -> str:
    return await _set_drained(node_id, True, actor, reason)


async def undrain_node(node_id: str, actor: str, reason: str = "") -> str:
    return await _set_drained(node_id, False, actor, reason)


async def _set_drained(node_id: str, drained: bool, actor: str, reason: str) -> str:
    """Set the drain flag, then tell the node (`node_control`) and the audit trail who did it."""
    result = await scripts.run("node_drain", [keys().node_meta(node_id)], ["1" if drained else "0", actor, reason])
    if result[0] == "UNKNOWN":
        raise NodeNotFound(node_id)
    _, old_status, new_status = result
    kind = NodeEvent.Kind.DRAINED if drained else NodeEvent.Kind.UNDRAINED
    await audit.record(
        "node", type="event", node_id=node_id, kind=kind, to=new_status, reason=reason, actor=actor,
        instance=settings.INSTANCE_ID, at=_now_ms(), **{"from": old_status},
    )
    channel = await get_redis().hget(keys().node_meta(node_id), "channel") or ""
    control = {"type": "node_control", "command": "drain" if drained else "undrain"}
    if reason:
        control["reason"] = reason
    if channel:
        await connections.send_frame(channel, control)
    else:
        await _send_to_http_node(node_id, control)
    if old_status != new_status:
        # The drained/undrained event above already records this change, with who made it.
        await status_changed(node_id, old_status, new_status, reason or kind, actor, _now_ms(), channel, record_event=False)
    return new_status


async def disconnect_node(node_id: str, actor: str) -> bool:
    """Close the node's socket (it reconnects by itself); False when it holds no socket."""
    meta = await get_redis().hgetall(keys().node_meta(node_id))
    if not meta:
        raise NodeNotFound(node_id)
    if not meta.get("channel"):
        return False
    await audit.record(
        "node", type="event", node_id=node_id, kind=NodeEvent.Kind.DISCONNECTED, reason="operator", actor=actor,
        instance=settings.INSTANCE_ID, at=_now_ms(),
    )
    await connections.close_connection(meta["channel"], CLOSE_DISCONNECTED, meta.get("conn"))
    return True


async def _send_to_http_node(node_id: str, frame: dict[str, Any]) -> None:
    meta = await get_redis().hmget(keys().node_meta(node_id), ["transport", "dispatch_url"])
    if meta[0] == "http" and meta[1]:
        connections.spawn(connections.post_frame(meta[1], frame))


# --- reads -------------------------------------------------------------------------------------------------------


def _live_view(meta: dict[str, str], cap: dict[str, str], reserved: int, running: int) -> dict[str, Any]:
    status = meta.get("status", NodeStatus.OFFLINE)
    if status != NodeStatus.OFFLINE and meta.get("drained") == "1":
        status = NodeStatus.DRAINING
    return {
        "node_id": meta.get("node_id", ""),
        "status": status,
        "health": meta.get("status", ""),
        "health_reason": meta.get("health_reason", ""),
        "pool": meta.get("member_of", ""),
        "language_set": meta.get("pool", ""),
        "languages": json.loads(meta.get("languages") or "[]"),
        "services": json.loads(meta.get("services") or "[]"),
        "max_concurrent_jobs": int(cap.get("max") or 0),
        "running": running,
        "reserved": reserved,
        "last_heartbeat_at": _iso(meta.get("last_heartbeat_at")),
        "registered_at": _iso(meta.get("registered_at")),
        "connected_instance": meta.get("instance", "") if status != NodeStatus.OFFLINE else "",
        "transport": meta.get("transport", ""),
        "resource_usage": json.loads(meta["resource_usage"]) if meta.get("resource_usage") else None,
        "drained_by": meta.get("drained_by", "") if meta.get("drained") == "1" else "",
        # An attempt on it timed out and it has not heartbeated since: it takes no new job (node_stalled.lua).
        "stalled": meta.get("stalled") == "1",
        "version": meta.get("version", ""),
        "token_id": meta.get("token_id", ""),
        "channel": meta.get("channel", ""),
    }


async def get_node(node_id: str) -> dict[str, Any] | None:
    nodes = await read_nodes([node_id])
    return nodes[0] if nodes else None


async def list_nodes(status: str | None = None, pool: str | None = None) -> list[dict[str, Any]]:
    node_ids = sorted(await get_redis().smembers(keys().nodes_all))
    nodes = await read_nodes(node_ids)
    return [n for n in nodes if (status is None or n["status"] == status) and (pool is None or n["pool"] == pool)]


async def read_nodes(node_ids: list[str]) -> list[dict[str, Any]]:
    """Live views of the given nodes (unknown ones left out), in one round trip."""
    k = keys()
    now_ms = _now_ms()

    def queue(pipe: Any, node_id: str) -> None:
        pipe.hgetall(k.node_meta(node_id))
        pipe.hgetall(k.node_cap(node_id))
        # Slot entries are scored by their own expiry: only live ones count.
        pipe.zcount(k.node_reservations(node_id), now_ms, "+inf")
        pipe.zcount(k.node_running(node_id), now_ms, "+inf")

    replies = await read_chunked(node_ids, queue, PIPELINE_CHUNK // 4)
    nodes = []
    for index in range(len(node_ids)):
        meta, cap, reserved, running = replies[4 * index : 4 * index + 4]
        if meta:
            nodes.append(_live_view(meta, cap, int(reserved), int(running)))
    return nodes


async def count_ready() -> int:
    """Known nodes that are ready and not drained: what the live page's sampler needs every interval."""
    return (await status_counts())[NodeStatus.READY]


async def status_counts() -> dict[str, int]:
    """Every status (0 when none) over the known nodes, as their live views show it (a drained node counts as
    draining), from two fields of each node's meta hash instead of each node's full live view."""
    k = keys()
    node_ids = list(await get_redis().smembers(k.nodes_all))
    replies = await read_chunked(node_ids, lambda pipe, node_id: pipe.hmget(k.node_meta(node_id), ["status", "drained"]))
    counts = dict.fromkeys(NodeStatus.values, 0)
    for status, drained in replies:
        if status is None:
            continue  # listed but gone (expired): not a node any more
        if status != NodeStatus.OFFLINE and drained == "1":
            status = NodeStatus.DRAINING
        counts[status] = counts.get(status, 0) + 1
    return counts


# --- helpers -----------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")
