"""What the node admin pages share: the live view of every node read once per request, services run for
several selected ids in one event loop, and the outcomes reported as messages."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from django.contrib import messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from core.redis import UNAVAILABLE, run_sync
from core.timefmt import format_time
from nodes import services

T = TypeVar("T")

# Where the live view of all nodes is cached for the rest of one request.
LIVE_NODES_ATTR = "_live_nodes"
REDIS_DOWN_WARNING = "Redis is unavailable: live status and load are not shown; the stored records are."
# Newest events shown inline on a node page; the full history is one link away.
RECENT_EVENTS = 50


class _NotDone:
    """Why an action did nothing for one node: not live in Redis, or Redis not answering."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


NOT_LIVE = _NotDone("not live")
REDIS_DOWN = _NotDone("Redis unavailable")


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _live_nodes(request: HttpRequest) -> dict[str, dict[str, Any]] | None:
    """The live view of every node by id, read once per request; None when Redis is down (with a warning)."""
    if not hasattr(request, LIVE_NODES_ATTR):
        try:
            live = {node["node_id"]: node for node in run_sync(services.list_nodes)}
        except UNAVAILABLE:
            live = None
            messages.warning(request, REDIS_DOWN_WARNING)
        setattr(request, LIVE_NODES_ATTR, live)
    return getattr(request, LIVE_NODES_ATTR)


def _for_each(fn: Callable[[str], Awaitable[T]], ids: Iterable[str]) -> dict[str, T | _NotDone]:
    """Run a service for several ids inside one event loop (one `run_sync`), keeping each outcome."""

    async def run_all() -> dict[str, T | _NotDone]:
        outcomes: dict[str, T | _NotDone] = {}
        for item_id in ids:
            try:
                outcomes[item_id] = await fn(item_id)
            except services.NodeNotFound:
                outcomes[item_id] = NOT_LIVE
            except UNAVAILABLE:
                outcomes[item_id] = REDIS_DOWN
        return outcomes

    return run_sync(run_all)


def _report_not_done(request: HttpRequest, outcomes: dict[str, Any], what: str) -> None:
    for reason in (NOT_LIVE, REDIS_DOWN):
        ids = [item_id for item_id, outcome in outcomes.items() if outcome is reason]
        if ids:
            level = messages.WARNING if reason is NOT_LIVE else messages.ERROR
            messages.add_message(request, level, f"Not {what} ({reason.reason}): {', '.join(ids)}")


def _heartbeat_age(value: str | None) -> str | None:
    return _age(datetime.fromisoformat(value)) if value else None


def _age(at: datetime) -> str:
    """How long ago, to the second (heartbeat timeouts are tens of seconds), with the time itself on hover."""
    seconds = max(0, int((timezone.now() - at).total_seconds()))
    if seconds < 120:
        ago = f"{seconds} s ago"
    elif seconds < 7200:
        ago = f"{seconds // 60} min ago"
    elif seconds < 172800:
        ago = f"{seconds // 3600} h ago"
    else:
        ago = f"{seconds // 86400} days ago"
    return format_html('<time datetime="{}" title="{}">{}</time>', at.isoformat(), format_time(at), ago)


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))
