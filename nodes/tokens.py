"""Node tokens on the live path: the token a node presents, checked against the database, and revocation,
which closes every live socket that uses the token."""

from __future__ import annotations

import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from core import audit
from core.redis import get_redis, keys
from nodes import connections
from nodes.models import NodeEvent, NodeToken
from nodes.services import CLOSE_TOKEN_REVOKED, TokenInfo, _now_ms, list_nodes

# The node lifecycle's logger, as before this module was split from nodes/services.py: filters on it still apply.
log = logging.getLogger("nodes.services")

LAST_USED_RESOLUTION = timedelta(minutes=1)


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
