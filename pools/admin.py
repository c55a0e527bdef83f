"""The operator console for pools: the configuration history mirrored to the database, the live pools read
from Redis above it, a "Rebuild now" button, and the durable epoch mark.

Live data is read through `pools.overview`, once per page. The button only asks the leader for a rebuild
(`pools.rebuild.request_rebuild`): the leader's fenced write is the one way a configuration is rebuilt,
so the web process never rebuilds itself.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from core.redis import UNAVAILABLE, run_sync
from pools import overview, rebuild
from pools.models import LeaderEpoch, PoolConfigVersion

REDIS_DOWN_WARNING = (
    "Redis is unavailable: the live pools are not shown; the stored configuration history is."
)
NO_LEADER_WARNING = (
    "No process holds the pool leader lease, so nothing will rebuild until a Celery worker runs the leader "
    "(or run `manage.py rebuild_pools --acquire`)."
)


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


async def _request_rebuild(actor: str) -> tuple[int, tuple[str, int] | None]:
    # Both in one event loop: the version the caller waits on, and whether anyone will act on the request.
    return await rebuild.request_rebuild(actor), await overview.read_leader()


@admin.register(PoolConfigVersion)
class PoolConfigVersionAdmin(admin.ModelAdmin):
    change_list_template = "admin/pools/poolconfigversion/change_list.html"
    list_display = ("version", "epoch", "generated_by", "generated_at", "added", "removed")
    list_display_links = ("version",)
    search_fields = ("generated_by",)
    date_hierarchy = "generated_at"
    fields = ("version", "epoch", "generated_by", "generated_at", "change_pretty", "pools_pretty")
    readonly_fields = fields

    # Versions are written by the audit writer from what Redis holds; an edited history would be worthless.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PoolConfigVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PoolConfigVersion | None = None) -> bool:
        return False

    def has_rebuild_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pools.change_poolconfigversion")

    @admin.display(description="added")
    def added(self, version: PoolConfigVersion) -> str:
        return ", ".join((version.change or {}).get("added", []))

    @admin.display(description="removed")
    def removed(self, version: PoolConfigVersion) -> str:
        return ", ".join((version.change or {}).get("removed", []))

    @admin.display(description="change")
    def change_pretty(self, version: PoolConfigVersion) -> str:
        return _pretty_json(version.change)

    @admin.display(description="pools")
    def pools_pretty(self, version: PoolConfigVersion) -> str:
        return _pretty_json(version.pools)

    def get_urls(self) -> list[URLPattern]:
        rebuild_url = path(
            "rebuild/", self.admin_site.admin_view(self.rebuild_view), name="pools_poolconfigversion_rebuild"
        )
        return [rebuild_url, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        # Only a page that is rendered reads Redis (not a redirect, not an error).
        if isinstance(response, TemplateResponse):
            response.context_data.update(self._live_context(request))
        return response

    def _live_context(self, request: HttpRequest) -> dict[str, Any]:
        try:
            live = run_sync(overview.read_overview)
        except UNAVAILABLE:
            live = None
            messages.warning(request, REDIS_DOWN_WARNING)
        return {
            "live": live,
            "redis_down": live is None,
            "can_rebuild": self.has_rebuild_permission(request),
            "rebuild_url": reverse("admin:pools_poolconfigversion_rebuild"),
        }

    def rebuild_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_rebuild_permission(request):
            raise PermissionDenied
        try:
            version, leader = run_sync(_request_rebuild, request.user.get_username())
        except UNAVAILABLE:
            messages.error(request, "Not requested: Redis is unavailable.")
        else:
            messages.success(
                request,
                f"Rebuild requested: the leader writes the version after v{version} at its next rebuild round; "
                "reload this page to see it.",
            )
            if leader is None:
                messages.warning(request, NO_LEADER_WARNING)
        return HttpResponseRedirect(reverse("admin:pools_poolconfigversion_changelist"))


@admin.register(LeaderEpoch)
class LeaderEpochAdmin(admin.ModelAdmin):
    list_display = ("name", "epoch")
    readonly_fields = ("name", "epoch")

    # The mark only ever rises, and only the leader raises it: a hand edit could let an epoch be granted twice.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LeaderEpoch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LeaderEpoch | None = None) -> bool:
        return False
