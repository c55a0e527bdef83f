"""Nodes and their event history: the stored records beside their live state in Redis, and the operator
actions (drain with a reason, undrain, disconnect)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.redis import UNAVAILABLE, run_sync
from core.timefmt import format_time
from nodes import services
from nodes.admin.live import (
    RECENT_EVENTS,
    REDIS_DOWN_WARNING,
    _actor,
    _age,
    _for_each,
    _heartbeat_age,
    _live_nodes,
    _NotDone,
    _pretty_json,
    _report_not_done,
)
from nodes.models import Node, NodeEvent, NodeStatus

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


class LiveStatusFilter(admin.SimpleListFilter):
    """Filter by the status Redis holds now (the stored one lags behind): the operator's first question is
    which nodes are not ready."""

    title = "status (live)"
    parameter_name = "live"
    NOT_READY = "not_ready"
    OFFLINE = "offline"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (self.NOT_READY, "Not ready"),
            *[(status.value, status.label) for status in NodeStatus if status != NodeStatus.OFFLINE],
            (self.OFFLINE, "Offline (not live)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Node]) -> QuerySet[Node] | None:
        wanted = self.value()
        if not wanted:
            return None
        live = _live_nodes(request)
        if live is None:
            return queryset.none()
        if wanted == self.OFFLINE:
            return queryset.exclude(node_id__in=list(live))
        if wanted == self.NOT_READY:
            ready = [node_id for node_id, node in live.items() if node["status"] == NodeStatus.READY]
            return queryset.exclude(node_id__in=ready)
        return queryset.filter(node_id__in=[node_id for node_id, node in live.items() if node["status"] == wanted])


class LiveInstanceFilter(admin.SimpleListFilter):
    """The nodes whose socket a web instance holds now (the live page links each instance here)."""

    title = "instance (live)"
    parameter_name = "instance"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        live = _live_nodes(request) or {}
        instances = sorted({node["connected_instance"] for node in live.values() if node.get("connected_instance")})
        return [(instance, instance) for instance in instances]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Node]) -> QuerySet[Node] | None:
        wanted = self.value()
        if not wanted:
            return None
        live = _live_nodes(request)
        if live is None:
            return queryset.none()
        return queryset.filter(node_id__in=[i for i, node in live.items() if node.get("connected_instance") == wanted])


class DrainForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Recorded in the node's event history, e.g. 'replacing the GPU' or 'ticket OPS-123'.",
        widget=forms.TextInput(attrs={"size": 60, "autofocus": True}),
    )


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    # The operator's questions first: which node, is it serving (one status: live when Redis knows the node,
    # else what was stored), where, how loaded, how fresh. Everything else is on the node's page.
    list_display = ("node", "status_now", "pool", "languages_display", "live_load", "version", "last_seen")
    list_filter = (LiveStatusFilter, "pool", LiveInstanceFilter, "version")
    search_fields = ("node_id",)
    actions = ("drain", "undrain", "disconnect")
    inlines = (NodeEventInline,)
    fieldsets = (
        (None, {"fields": ("answer",)}),
        (
            "Node",
            {
                "fields": (
                    ("pool", "languages_display"),
                    ("version", "platform", "transport"),
                    "services_display",
                    "token",
                    ("first_seen_at", "last_seen_at"),
                    "event_history",
                )
            },
        ),
        ("Live state in Redis (raw)", {"fields": ("live_state",), "classes": ("collapse",)}),
        ("Capability snapshot (raw)", {"fields": ("capabilities_pretty",), "classes": ("collapse",)}),
    )
    readonly_fields = ("answer", "languages_display", "services_display", "event_history", "live_state", "capabilities_pretty")

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

    # --- list columns (live values read from the attribute set by LiveNodeChangeList / get_object) ---

    @staticmethod
    def _live(node: Node) -> dict[str, Any] | None:
        return getattr(node, "live", None)

    @admin.display(description="node", ordering="node_id")
    def node(self, node: Node) -> str:
        return node.node_id

    @admin.display(description="status")
    def status_now(self, node: Node) -> str:
        """The live status when Redis knows the node; otherwise the stored one, marked as such."""
        if getattr(node, "redis_down", True):
            return format_html('{} <span class="quiet">(stored; Redis down)</span>', node.status)
        live = self._live(node)
        if live is None:
            return mark_safe('<span class="status status-offline">offline</span>')
        reason = live.get("health_reason") if live["status"] != NodeStatus.READY else ""
        return format_html(
            '<span class="status status-{}" title="{}">{}</span>{}',
            live["status"],
            reason or "",
            live["status"],
            format_html(' <span class="quiet">{}</span>', reason) if reason else "",
        )

    @admin.display(description="load")
    def live_load(self, node: Node) -> str | None:
        live = self._live(node)
        if not live:
            return None
        reserved = f" +{live['reserved']} reserved" if live["reserved"] else ""
        return f"{live['running']}/{live['max_concurrent_jobs']}{reserved}"

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, node: Node) -> str:
        live = self._live(node)
        if live and live.get("last_heartbeat_at"):
            at = datetime.fromisoformat(live["last_heartbeat_at"])
        else:
            at = node.last_seen_at
        return _age(at)

    @admin.display(description="languages")
    def languages_display(self, node: Node) -> str:
        return ", ".join(node.languages or [])

    # --- detail page ---

    @admin.display(description="status")
    def answer(self, node: Node) -> str:
        """The first thing on the page: is the node serving, since when, why, and what it is doing."""
        if getattr(node, "redis_down", False):
            return format_html("<strong>{}</strong> (stored: Redis is unavailable, the live state is unknown)", node.status)
        live = self._live(node)
        latest = node.events.exclude(to_status="").order_by("-at", "-id").first()
        status = live["status"] if live else "offline"
        because = ""
        if latest is not None and latest.to_status == status:
            because = f" since {format_time(latest.at)}"
            if latest.reason or latest.actor:
                because += f" ({latest.kind.replace('_', ' ')} by {latest.actor or 'system'}: {latest.reason or '-'})"
        if live is None:
            return format_html(
                "<strong>offline</strong>{}: Redis does not know this node. Last seen {}.",
                because,
                _age(node.last_seen_at),
            )
        parts = [
            format_html(
                "load {}/{} running{}",
                live["running"],
                live["max_concurrent_jobs"],
                f", {live['reserved']} reserved" if live["reserved"] else "",
            ),
            format_html("pool {}", live.get("pool") or node.pool or "none"),
            format_html("last heartbeat {}", _heartbeat_age(live["last_heartbeat_at"]) or "never"),
            format_html(
                "connected to {} over {}", live.get("connected_instance") or "-", live.get("transport") or node.transport
            ),
        ]
        if live.get("health_reason"):
            parts.insert(0, format_html("health: {}", live["health_reason"]))
        return format_html(
            '<strong class="status status-{}">{}</strong>{}<br>{}',
            status,
            status,
            because,
            format_html_join(" · ", "{}", ((part,) for part in parts)),
        )

    @admin.display(description="services")
    def services_display(self, node: Node) -> str:
        live = self._live(node)
        installed = (live or {}).get("services") or node.capabilities.get("installed_services") or []
        if not installed:
            return "-"
        return format_html_join(
            ", ",
            "{} <span class=\"quiet\">{} ({}, {})</span>",
            ((s.get("type"), s.get("service_id"), s.get("device"), s.get("status")) for s in installed),
        )

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
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> TemplateResponse | None:
        """Asks for a reason first (it goes into the event history), then drains."""
        form = DrainForm(request.POST if "reason" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Drain nodes",
                "form": form,
                "nodes": list(queryset.values_list("node_id", flat=True)),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/nodes/drain_reason.html", context)
        actor = _actor(request)
        reason = form.cleaned_data["reason"]
        ids = list(queryset.values_list("node_id", flat=True))
        outcomes = _for_each(lambda node_id: services.drain_node(node_id, actor, reason), ids)
        self._report_statuses(request, outcomes, "drained")
        return None

    @admin.action(description="Undrain selected nodes", permissions=["operate"])
    def undrain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        ids = list(queryset.values_list("node_id", flat=True))
        outcomes = _for_each(lambda node_id: services.undrain_node(node_id, actor, "undrained in the admin"), ids)
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
