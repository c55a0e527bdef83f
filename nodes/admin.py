"""The operator console for nodes: stored records beside their live state in Redis, the operator actions
(drain, undrain, disconnect), the event history, and node tokens.

Live state is read through `nodes.services`, once per page, and every action calls a service: the admin
never writes Redis or a status itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from access.admin import CredentialForm, ShowSecretOnceMixin
from core.redis import UNAVAILABLE, run_sync
from nodes import services
from nodes.models import Node, NodeEvent, NodeToken

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
    # Seconds matter here (timeouts are tens of seconds), which Django's date formats leave out.
    if not value:
        return None
    at = datetime.fromisoformat(value)
    age = max(0, int((timezone.now() - at).total_seconds()))
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S} ({age} s ago)"


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


# --- nodes ------------------------------------------------------------------------------------------------------


class LiveNodeChangeList(ChangeList):
    """Attaches the live view to each node of the page after pagination, from one read of Redis."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # An action POST ends in a redirect and renders nothing: do not read the fleet for it.
        if request.method == "POST":
            return
        live = _live_nodes(request)
        self.result_list = list(self.result_list)
        for node in self.result_list:
            node.redis_down = live is None
            node.live = live.get(node.node_id) if live is not None else None
        if live:
            self._mention_unrecorded(request, live)

    @staticmethod
    def _mention_unrecorded(request: HttpRequest, live: dict[str, dict[str, Any]]) -> None:
        # Rows are written by the audit writer, so a stalled writer would otherwise hide live nodes entirely.
        recorded = set(Node.objects.filter(node_id__in=list(live)).values_list("node_id", flat=True))
        unrecorded = sorted(set(live) - recorded)
        if unrecorded:
            shown = ", ".join(unrecorded[:10]) + (", ..." if len(unrecorded) > 10 else "")
            messages.info(
                request,
                f"{len(unrecorded)} live node(s) not in the database yet (the audit writer records them): {shown}",
            )


class RecentEventsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[NodeEvent]:
        # Sliced once and kept: the formset asks for its queryset several times per render.
        if not hasattr(self, "_recent"):
            self._recent = super().get_queryset()[:RECENT_EVENTS]
        return self._recent


class NodeEventInline(admin.TabularInline):
    model = NodeEvent
    fk_name = "node"
    fields = ("at", "kind", "transition", "reason", "actor", "instance")
    readonly_fields = fields
    ordering = ("-at", "-id")
    extra = 0
    can_delete = False
    verbose_name_plural = f"Events (newest {RECENT_EVENTS})"

    formset = RecentEventsFormSet

    @admin.display(description="from → to")
    def transition(self, event: NodeEvent) -> str:
        if not event.from_status and not event.to_status:
            return ""
        return f"{event.from_status or '∅'} → {event.to_status or '∅'}"

    def has_add_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "node_id",
        "live_status",
        "live_load",
        "live_reserved",
        "live_heartbeat",
        "live_instance",
        "live_health_reason",
        "status",
        "pool",
        "languages_display",
        "version",
        "last_seen_at",
    )
    list_filter = ("status", "pool")
    search_fields = ("node_id",)
    actions = ("drain", "undrain", "disconnect")
    inlines = (NodeEventInline,)
    fieldsets = (
        (
            "Stored record",
            {
                "fields": (
                    "node_id",
                    "status",
                    "pool",
                    "languages",
                    "version",
                    "platform",
                    "transport",
                    "token",
                    "first_seen_at",
                    "last_seen_at",
                    "event_history",
                )
            },
        ),
        ("Live state (Redis)", {"fields": ("live_state",)}),
        ("Capability snapshot", {"fields": ("capabilities_pretty",)}),
    )
    readonly_fields = ("event_history", "live_state", "capabilities_pretty")

    # The record is an audit mirror written by the audit writer: nobody edits, adds or deletes it by hand.
    # Operators act through the actions, which need the `change_node` permission.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("nodes.change_node")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LiveNodeChangeList

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Node | None:
        node = super().get_object(request, object_id, from_field)
        if node is not None:
            try:
                node.live = run_sync(services.get_node, node.node_id)
                node.redis_down = False
            except UNAVAILABLE:
                node.live, node.redis_down = None, True
                messages.warning(request, REDIS_DOWN_WARNING)
        return node

    # --- live columns (read from the attribute set by LiveNodeChangeList / get_object) ---

    @staticmethod
    def _live(node: Node) -> dict[str, Any] | None:
        return getattr(node, "live", None)

    @admin.display(description="live status")
    def live_status(self, node: Node) -> str | None:
        if getattr(node, "redis_down", True):
            return None
        live = self._live(node)
        return live["status"] if live else "not live"

    @admin.display(description="running / max")
    def live_load(self, node: Node) -> str | None:
        live = self._live(node)
        return f"{live['running']}/{live['max_concurrent_jobs']}" if live else None

    @admin.display(description="reserved")
    def live_reserved(self, node: Node) -> int | None:
        live = self._live(node)
        return live["reserved"] if live else None

    @admin.display(description="last heartbeat")
    def live_heartbeat(self, node: Node) -> str | None:
        live = self._live(node)
        return _heartbeat_age(live["last_heartbeat_at"]) if live else None

    @admin.display(description="instance")
    def live_instance(self, node: Node) -> str | None:
        live = self._live(node)
        return live["connected_instance"] or None if live else None

    @admin.display(description="health reason")
    def live_health_reason(self, node: Node) -> str | None:
        live = self._live(node)
        return live["health_reason"] or None if live else None

    @admin.display(description="languages")
    def languages_display(self, node: Node) -> str:
        return ", ".join(node.languages or [])

    # --- detail page ---

    @admin.display(description="live state")
    def live_state(self, node: Node) -> str:
        if getattr(node, "redis_down", False):
            return "unknown: Redis is unavailable"
        live = self._live(node)
        if live is None:
            return (
                "not live: Redis does not know this node (offline for longer than the retention, or flushed)"
            )
        return _pretty_json(live)

    @admin.display(description="capabilities")
    def capabilities_pretty(self, node: Node) -> str:
        return _pretty_json(node.capabilities)

    @admin.display(description="history")
    def event_history(self, node: Node) -> str:
        url = reverse("admin:nodes_nodeevent_changelist") + "?" + urlencode({"node_ref": node.node_id})
        return format_html('<a href="{}">All events of {}</a>', url, node.node_id)

    # --- actions ---

    @admin.action(
        description="Drain selected nodes (no new jobs; running jobs finish)", permissions=["operate"]
    )
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        ids = list(queryset.values_list("node_id", flat=True))
        outcomes = _for_each(lambda node_id: services.drain_node(node_id, actor, "admin"), ids)
        self._report_statuses(request, outcomes, "drained")

    @admin.action(description="Undrain selected nodes", permissions=["operate"])
    def undrain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        ids = list(queryset.values_list("node_id", flat=True))
        outcomes = _for_each(lambda node_id: services.undrain_node(node_id, actor, "admin"), ids)
        self._report_statuses(request, outcomes, "undrained")

    @admin.action(
        description="Disconnect selected nodes (close the socket; the node reconnects)",
        permissions=["operate"],
    )
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        ids = list(queryset.values_list("node_id", flat=True))
        outcomes = _for_each(lambda node_id: services.disconnect_node(node_id, actor), ids)
        closed = [node_id for node_id, outcome in outcomes.items() if outcome is True]
        no_socket = [node_id for node_id, outcome in outcomes.items() if outcome is False]
        if closed:
            messages.success(request, f"Disconnected: {', '.join(closed)}")
        if no_socket:
            messages.warning(
                request, f"Not disconnected (holds no socket: offline or HTTP link): {', '.join(no_socket)}"
            )
        _report_not_done(request, outcomes, "disconnected")

    @staticmethod
    def _report_statuses(request: HttpRequest, outcomes: dict[str, str | _NotDone], what: str) -> None:
        done = [
            f"{node_id} (now {outcome})" for node_id, outcome in outcomes.items() if isinstance(outcome, str)
        ]
        if done:
            messages.success(request, f"{what.capitalize()}: {', '.join(done)}")
        _report_not_done(request, outcomes, what)


@admin.register(NodeEvent)
class NodeEventAdmin(admin.ModelAdmin):
    list_display = ("at", "node_ref", "kind", "from_status", "to_status", "reason", "actor", "instance")
    list_filter = ("kind", "to_status")
    search_fields = ("node_ref", "actor")
    date_hierarchy = "at"
    readonly_fields = ("details_pretty",)
    exclude = ("details",)

    # History is written only by the audit writer; an edited trail would be worthless.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: NodeEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: NodeEvent | None = None) -> bool:
        return False

    @admin.display(description="details")
    def details_pretty(self, event: NodeEvent) -> str:
        return _pretty_json(event.details)


# --- node tokens ------------------------------------------------------------------------------------------------


class NodeTokenForm(CredentialForm):
    class Meta:
        model = NodeToken
        fields = ("name", "node_id", "expires_at")

    def clean_node_id(self) -> str:
        node_id = self.cleaned_data.get("node_id", "")
        # A binding the register path would refuse makes a token that can never be used.
        if node_id and not services.NODE_ID_RE.match(node_id):
            raise forms.ValidationError("A node id holds only letters, digits and . _ : - (at most 64).")
        return node_id


@admin.register(NodeToken)
class NodeTokenAdmin(ShowSecretOnceMixin, admin.ModelAdmin):
    secret_label = "node token"
    secret_hint = "Nodes connect to ws://<host>/ws/node?token=<token> (or send it as a Bearer header)."
    form = NodeTokenForm
    list_display = ("id", "name", "bound_node", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("id", "name", "node_id")
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: NodeToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name", "node_id", "expires_at")
        # secret_hash is never listed: even a hash of a bearer secret has no business on a screen.
        return (
            "id",
            "name",
            "node_id",
            "expires_at",
            "created_at",
            "created_by",
            "revoked_at",
            "revoked_by",
            "last_used_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: NodeToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Binding and expiry are copied onto live connections at handshake, so editing them later would
        # not reach sockets already open: revoke and issue a new token instead.
        return (
            "id",
            "node_id",
            "expires_at",
            "created_at",
            "created_by",
            "revoked_at",
            "revoked_by",
            "last_used_at",
        )

    def has_delete_permission(self, request: HttpRequest, obj: NodeToken | None = None) -> bool:
        # Deleting would drop the trail of who held it; revoking keeps it.
        return False

    @admin.display(description="bound node")
    def bound_node(self, token: NodeToken) -> str:
        return token.node_id or "any"

    def save_model(self, request: HttpRequest, obj: NodeToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plaintext = NodeToken.issue(
            obj.name, node_id=obj.node_id, expires_at=obj.expires_at, created_by=request.user
        )
        obj.pk = token.pk
        obj.refresh_from_db()
        self.remember_secret(request, plaintext)

    @admin.action(
        description="Revoke selected tokens (closes the sockets that use them)", permissions=["change"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[NodeToken]) -> None:
        already = set(queryset.filter(revoked_at__isnull=False).values_list("id", flat=True))
        ids = list(queryset.values_list("id", flat=True))
        actor = _actor(request)
        # Already revoked tokens go through the service too: it re-flags their live nodes in Redis.
        outcomes = _for_each(lambda token_id: services.revoke_token(token_id, actor), ids)
        done = [
            f"{token_id} ({told} live connection{'s' if told != 1 else ''} closed)"
            for token_id, told in outcomes.items()
            if isinstance(told, int) and token_id not in already
        ]
        if done:
            messages.success(request, f"Revoked: {', '.join(done)}")
        if already:
            messages.info(request, f"Already revoked: {', '.join(sorted(already))}")
        failed = [token_id for token_id, outcome in outcomes.items() if outcome is REDIS_DOWN]
        if failed:
            # The database update runs before Redis is touched, so these are revoked for new handshakes.
            messages.error(
                request,
                "Revoked in the database, but live connections could not be closed (Redis unavailable): "
                f"{', '.join(failed)}. Run the action again once Redis is back.",
            )
