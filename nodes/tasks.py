from celery import shared_task

from nodes import services
from scheduler.locks import skip_if_running
from scheduler.redis import run_sync


@shared_task(name="nodes.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> int:
    with skip_if_running("nodes.sweep_deadlines") as acquired:
        return run_sync(services.sweep_deadlines) if acquired else 0
