from celery import shared_task
from django.conf import settings

from core import audit
from core.locks import held_lock


@shared_task(name="core.write_audit", ignore_result=True)
def write_audit() -> int:
    # One writer at a time keeps the hot audit tables single-writer (SQLite) and batches large.
    # The lock is short and renewed after every batch: a writer killed or frozen while holding it stops the
    # mirror for one AUDIT_LOCK_TTL_S, not for minutes (a Redis wipe in that window would take the backlog).
    with held_lock("core.write_audit", ttl_s=settings.AUDIT_LOCK_TTL_S) as lock:
        return audit.drain(renew=lock.renew) if lock else 0
