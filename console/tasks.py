from celery import shared_task
from django.conf import settings

from console import collector
from core.redis import run_sync


@shared_task(name="console.refresh_metrics_snapshot", ignore_result=True)
def refresh_metrics_snapshot() -> None:
    # The fleet-sized read behind /metrics' live gauges, here instead of on a web process's event loop.
    run_sync(collector.refresh_shared_rows, settings.METRICS_SNAPSHOT_MAX_AGE_S)
