from celery import shared_task

from scheduler import audit
from scheduler.locks import skip_if_running


@shared_task(name="scheduler.write_audit", ignore_result=True)
def write_audit() -> int:
    # One writer at a time keeps the hot audit tables single-writer (SQLite) and batches large.
    with skip_if_running("scheduler.write_audit", ttl_s=120) as acquired:
        return audit.drain() if acquired else 0
