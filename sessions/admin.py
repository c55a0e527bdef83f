"""The operator console for sessions: the audit rows (one per session, with its jobs a click away) and the
live sessions page, read from Redis: who, since when, languages, utterances, in flight."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core.redis import UNAVAILABLE, run_sync
from sessions import registry
from sessions.models import SessionRecord

log = logging.getLogger(__name__)

LIVE_LIMIT = 500


def _jobs_link(session_id: str) -> str:
    return format_html('<a href="{}?q={}">jobs</a>', reverse("admin:jobs_job_changelist"), session_id)


@admin.register(SessionRecord)
class SessionRecordAdmin(admin.ModelAdmin):
    list_display = (
        "session_id", "platform", "client_version", "mode", "languages", "api_key_id", "opened_at", "closed_at",
        "close_reason", "utterances", "results", "missing", "jobs",
    )  # fmt: skip
    list_filter = ("platform", "mode", "close_reason")
    search_fields = ("=session_id", "=trace_id", "=api_key_id")
    date_hierarchy = "opened_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in SessionRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="languages")
    def languages(self, row: SessionRecord) -> str:
        if row.mode == "two_way_auto":
            return f"{row.lang_a} ⇄ {row.lang_b}"
        return f"{row.src_lang} → {row.tgt_lang}"

    @admin.display(description="jobs")
    def jobs(self, row: SessionRecord) -> str:
        return _jobs_link(row.session_id)


def _rows(sessions: list[dict[str, str]]) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for session in sessions:
        opened = int(session.get("opened_at") or 0) / 1000
        two_way = session.get("mode") == "two_way_auto"
        rows.append({
            **session,
            "languages": f"{session.get('lang_a')} ⇄ {session.get('lang_b')}" if two_way else f"{session.get('src_lang')} → {session.get('tgt_lang')}",
            "open_for_s": int(now - opened) if opened else None,
            "opened": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(opened)) if opened else "",
            "jobs": _jobs_link(session["session_id"]),
        })  # fmt: skip
    return rows


def live_sessions_page(request: HttpRequest) -> HttpResponse:
    error = ""
    total, rows = 0, []
    try:
        total, sessions = run_sync(registry.live_sessions, LIVE_LIMIT)
        rows = _rows(sessions)
    except UNAVAILABLE:
        log.warning("live sessions page: Redis unavailable", extra={"event": "redis_down"})
        error = "Redis is unavailable: the live sessions cannot be read."
    context = {
        **admin.site.each_context(request),
        "title": "Live sessions",
        "total": total,
        "sessions": rows,
        "shown_limit": LIVE_LIMIT,
        "error": error,
    }
    return TemplateResponse(request, "admin/live_sessions.html", context)
