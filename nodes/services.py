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
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from core import audit, metrics, scripts
from core.redis import PIPELINE_CHUNK, get_redis, keys, read_chunked
from nodes import connections, reactions
from nodes.health import check_heartbeat, pool_name, ready_services
from nodes.models import NodeEvent, NodeStatus
from nodes.schemas import AsrPartial, JobAck, JobResult, JobStarted, NodeError, NodeHeartbeat, NodeRegister

log = logging.getLogger(__name__)

NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CLOSE_SUPERSEDED = 4409
CLOSE_TOKEN_REVOKED = 4403
CLOSE_DISCONNECTED = 4000
# How long an offline node stays listed (and its keys kept) before it is forgotten.
OFFLINE_RETENTION_S = 24 * 3600
SYSTEM = "system"
# node_error codes counted under their own label; anything else counts as "other" (labels stay bounded).
KNOWN_NODE_ERROR_CODES = frozenset(
    {"MODEL_NOT_AVAILABLE", "PROCESSING_ERROR", "GPU_ERROR", "OUT_OF_MEMORY", "SERVICE_ERROR"}
)


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
class HeartbeatOutcome:
    result: str  # ok | stale | revoked | unknown
    status: str = ""
# --- what a node reports, stored by registration (nodes/registration.py) and heartbeats ------------------------


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
