"""Node registration: PROTOCOL's checks in order, then the register script (id ownership checked against the
token in the same atomic step), the pools, the older connection of the same node closed (4409), audit and
metrics. Heartbeats and the rest of the node lifecycle are in nodes/services.py."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core import audit, metrics, scripts
from core.redis import get_redis, keys
from nodes import connections, reactions
from nodes.health import ready_services
from nodes.models import Node, NodeEvent
from nodes.schemas import NodeRegister
from nodes.services import (
    CLOSE_SUPERSEDED,
    NODE_ID_RE,
    Connection,
    _capability_fields,
    _language_fields,
    _ms,
    _now_ms,
    _services_summary,
)

# The node lifecycle's logger, as before this module was split from nodes/services.py: filters on it still apply.
log = logging.getLogger("nodes.services")


class RegistrationRejected(Exception):
    """Registration refused with one of PROTOCOL's error codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Registration:
    node_id: str
    status: str


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
    requested = message.node_id
    # An empty string is a malformed id, not a request to mint one.
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
