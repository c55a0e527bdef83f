"""The live cluster page of the admin: one page that answers, in seconds, whether nodes are healthy, a
language set is starved, jobs are failing, who leads, and whether the audit writer keeps up.

Everything on it comes from Redis (the cluster snapshot and the activity history of core/stats.py),
never from the database, whose rows lag the live state. Staff only, never cached; the page polls its JSON
twice per STATS refresh and redraws itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from console.cluster import Snapshot, read_snapshot
from core import stats
from core.redis import UNAVAILABLE, run_sync

log = logging.getLogger(__name__)

REFRESH_S = 2.0
HISTORY_S = 3600.0


def cluster_data() -> dict[str, Any]:
    async def read() -> tuple[Snapshot, list[dict[str, Any]], list[dict[str, Any]]]:
        return await read_snapshot(), await stats.read_series(HISTORY_S), await stats.read_recent_failures()

    snapshot, series, failures = run_sync(read)
    return _as_json(snapshot, series, failures)


def _as_json(
    snapshot: Snapshot, series: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> dict[str, Any]:
    now = snapshot.read_at
    last_minute = [point for point in series if point["t"] >= now - 60]
    per_pool_minute: Counter[str] = Counter()
    failed_hour: Counter[str] = Counter()
    for point in last_minute:
        per_pool_minute.update(point.get("pools", {}))
    for point in series:
        failed_hour.update(point.get("failed", {}))
    pools = snapshot.pools
    return {
        "read_at": now,
        "refresh_s": REFRESH_S,
        "sample_interval_s": settings.STATS_SAMPLE_INTERVAL_S,
        "instances": [
            {
                "instance": i.instance_id,
                "host": i.host,
                "pid": i.pid,
                "live": i.advertised,
                "uptime_s": i.uptime_s(now),
                "seen_s_ago": round(max(0.0, now - i.last_seen), 1),
                "node_sockets": i.node_sockets,
            }  # fmt: skip
            for i in snapshot.instances
        ],
        "leader": {"holder": pools.leader, "epoch": pools.leader_epoch},
        "highest_epoch": pools.highest_epoch,
        "leader_changes": pools.leader_changes,
        "config_version": pools.version,
        "nodes_by_status": snapshot.nodes_by_status,
        "nodes_total": sum(snapshot.nodes_by_status.values()),
        "pools": [{**row.to_dict(), "jobs_per_min": per_pool_minute.get(row.name, 0)} for row in pools.pools],
        "jobs_in_flight": snapshot.jobs_in_flight,
        "jobs_waiting": snapshot.jobs_waiting,
        "audit": {
            "backlog": snapshot.audit.backlog,
            "lag_s": round(snapshot.audit.lag_s, 1),
            "dead_letters": snapshot.audit.dead_letters,
        },  # fmt: skip
        "failures_last_hour": dict(failed_hour.most_common()),
        "recent_failures": failures,
        "series": [
            {
                "t": p["t"],
                "jobs_per_s": p["jobs_per_s"],
                "p95_dispatch_ms": p["p95_dispatch_ms"],
                "ready_nodes": p["ready_nodes"],
            }
            for p in series
        ],
    }


def _read_or_error() -> tuple[dict[str, Any] | None, str]:
    try:
        return cluster_data(), ""
    except UNAVAILABLE:
        log.warning("live cluster page: Redis unavailable", extra={"event": "redis_down"})
        return None, "Redis is unavailable: the live state cannot be read."


def cluster_page(request: HttpRequest) -> HttpResponse:
    data, error = _read_or_error()
    context = {
        **admin.site.each_context(request),
        "title": "Live cluster",
        "initial": data,
        "error": error,
        "rendered_at": time.time(),
    }
    return TemplateResponse(request, "admin/live_cluster.html", context)


def cluster_json(request: HttpRequest) -> JsonResponse:
    data, error = _read_or_error()
    if data is None:
        return JsonResponse(
            {"error": {"code": "DEPENDENCY_DOWN", "message": error, "details": {}}}, status=503
        )
    return JsonResponse(data)
