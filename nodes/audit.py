"""Applies node audit entries (see core/audit.py) to the Node and NodeEvent tables in bulk."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nodes.models import Node, NodeEvent, NodeToken

SNAPSHOT_FIELDS = ("pool", "languages", "transport", "version", "platform", "capabilities")


def _at(ms: int | float | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def apply_entries(items: list[dict[str, Any]]) -> None:
    """Upsert one Node row per node mentioned, then insert the events; runs inside the writer's transaction."""
    node_ids = {item["node_id"] for item in items if item.get("node_id")}
    nodes = {node.node_id: node for node in Node.objects.select_for_update().filter(node_id__in=node_ids)}
    token_ids = {item["snapshot"]["token_id"] for item in items if item.get("snapshot", {}).get("token_id")}
    known_tokens = set(NodeToken.objects.filter(pk__in=token_ids).values_list("pk", flat=True))

    events = []
    for item in sorted(items, key=lambda entry: int(entry.get("at", 0))):
        node_id = item.get("node_id") or ""
        at = _at(item.get("at", 0))
        node = nodes.get(node_id)
        registered_node = item.get("kind") != NodeEvent.Kind.REJECTED and node_id
        if node is None and registered_node:
            node = nodes[node_id] = Node(node_id=node_id, first_seen_at=at, last_seen_at=at)
        if node is not None:
            node.last_seen_at = max(node.last_seen_at, at)
            if snapshot := item.get("snapshot"):
                for field in SNAPSHOT_FIELDS:
                    if field in snapshot:
                        setattr(node, field, snapshot[field])
                token_id = snapshot.get("token_id")
                node.token_id = token_id if token_id in known_tokens else None
            if item.get("to"):
                node.status = item["to"]
        if item.get("type") == "event":
            events.append(
                NodeEvent(
                    node=node,
                    node_ref=node_id,
                    kind=item["kind"],
                    from_status=item.get("from") or "",
                    to_status=item.get("to") or "",
                    reason=(item.get("reason") or "")[:200],
                    actor=(item.get("actor") or "")[:150],
                    instance=(item.get("instance") or "")[:100],
                    details=item.get("details") or {},
                    at=at,
                )
            )
    for node in nodes.values():
        node.save()
    NodeEvent.objects.bulk_create(events)
