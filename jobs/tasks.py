from celery import shared_task

from jobs import services
from scheduler.locks import skip_if_running
from scheduler.redis import run_sync


@shared_task(name="jobs.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> int:
    # The safety net for deadlines when no web instance is running its own sweeper.
    with skip_if_running("jobs.sweep_deadlines") as acquired:
        return run_sync(services.sweep_deadlines) if acquired else 0
