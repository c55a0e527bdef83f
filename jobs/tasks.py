from celery import shared_task

from core.locks import skip_if_running
from core.redis import run_sync
from jobs import services
from jobs.reconcile import reconcile_jobs


@shared_task(name="jobs.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> int:
    # The safety net for deadlines when no web instance is running its own sweeper.
    with skip_if_running("jobs.sweep_deadlines") as acquired:
        return run_sync(services.sweep_deadlines) if acquired else 0


@shared_task(name="jobs.reconcile", ignore_result=True)
def reconcile() -> int:
    # Settles mirror rows whose end was never recorded or whose job Redis lost (jobs/reconcile.py).
    with skip_if_running("jobs.reconcile", ttl_s=300) as acquired:
        return reconcile_jobs().checked if acquired else 0
