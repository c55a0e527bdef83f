from celery import shared_task
from django.conf import settings

from core import audit, metrics
from core.locks import skip_if_running
from core.redis import run_sync


@shared_task(name="core.write_audit", ignore_result=True)
def write_audit() -> int:
    # One writer at a time keeps the hot audit tables single-writer (SQLite) and batches large.
    with skip_if_running("core.write_audit", ttl_s=120) as acquired:
        return audit.drain() if acquired else 0


@shared_task(name="core.refresh_metrics_snapshot", ignore_result=True)
def refresh_metrics_snapshot() -> None:
    # The fleet-sized read of /metrics' live gauges, here instead of on a web process's event loop.
    run_sync(metrics.refresh_shared_rows, settings.METRICS_SNAPSHOT_MAX_AGE_S)
