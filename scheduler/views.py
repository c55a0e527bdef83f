"""Process-level endpoints: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from console.collector import LiveStateCollector
from core import metrics
from core.redis import UNAVAILABLE, get_redis

log = logging.getLogger(__name__)


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False
    finally:
        connection.close()


async def readyz(request: HttpRequest) -> JsonResponse:
    failing = []
    try:
        await asyncio.wait_for(get_redis().ping(), timeout=2)
    except (*UNAVAILABLE, Exception):
        failing.append("redis")
    if not await sync_to_async(_database_answers, thread_sensitive=False)():
        failing.append("database")
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok"})


def _metrics_refusal(request: HttpRequest) -> str | None:
    """Why this request may not read /metrics, or None when it may (see METRICS_TOKEN in settings)."""
    if settings.METRICS_TOKEN:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return "missing_token"
        if not hmac.compare_digest(presented.strip().encode(), settings.METRICS_TOKEN.encode()):
            return "bad_token"
        return None
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return "unknown_address"
    if not any(address in network for network in settings.METRICS_ALLOWED_NETS):
        return "address_not_allowed"
    return None


def metrics_registry() -> CollectorRegistry:
    """In multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `make run`) counters and histograms are summed
    over every process's files; the live-state gauges are read from Redis once per scrape either way."""
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    registry.register(LiveStateCollector())
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    reason = _metrics_refusal(request)
    if reason is not None:
        metrics.METRICS_REFUSALS.labels(reason=reason).inc()
        log.warning("metrics scrape refused", extra={"event": "metrics_refused", "reason": reason})
        detail = "send Authorization: Bearer <METRICS_TOKEN>" if settings.METRICS_TOKEN else (
            "this address is outside METRICS_ALLOWED_NETS"
        )
        body = {"error": {"code": "FORBIDDEN", "message": f"/metrics refused: {detail}", "details": {"reason": reason}}}
        return JsonResponse(body, status=403)
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)


# Browsers ask for /favicon.ico on every page; without an answer each ask was a 404 warning in the log.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#417690"/>'
    '<path d="M4 11V5h2v4h3v2zM10 5h2v6h-2z" fill="#fff"/></svg>'
)


def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FAVICON, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
