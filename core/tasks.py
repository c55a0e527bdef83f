from celery import shared_task

from core import audit
from core.locks import skip_if_running


@shared_task(name="core.write_audit", ignore_result=True)
def write_audit() -> int:
    # One writer at a time keeps the hot audit tables single-writer (SQLite) and batches large.
    with skip_if_running("core.write_audit", ttl_s=120) as acquired:
        return audit.drain() if acquired else 0
