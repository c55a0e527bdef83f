from celery import shared_task

from core import stats
from core.locks import skip_if_running
from core.redis import run_sync
from jobs import services
from jobs.reconcile import reconcile_jobs


async def _sweep_and_flush() -> int:
    fired = await services.sweep_deadlines()
    # A worker has no background loop to flush the live-page counts of the jobs this sweep ended.
    await stats.flush()
    return fired


@shared_task(name="jobs.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> int:
    # The safety net for deadlines when no web instance is running its own sweeper.
    with skip_if_running("jobs.sweep_deadlines") as acquired:
        return run_sync(_sweep_and_flush) if acquired else 0


@shared_task(name="jobs.reconcile", ignore_result=True)
def reconcile() -> int:
    # Settles mirror rows whose end was never recorded or whose job Redis lost (jobs/reconcile.py).
    with skip_if_running("jobs.reconcile", ttl_s=300) as acquired:
        return reconcile_jobs().checked if acquired else 0
