"""Process-level endpoints: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView

from scheduler.redis import UNAVAILABLE, get_redis


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


def metrics_view(request: HttpRequest) -> HttpResponse:
    return ExportToDjangoView(request)
