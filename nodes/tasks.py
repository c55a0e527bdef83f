from celery import shared_task

from core.locks import skip_if_running
from core.redis import run_sync
from nodes import services


@shared_task(name="nodes.sweep_deadlines", ignore_result=True)
def sweep_deadlines() -> int:
    with skip_if_running("nodes.sweep_deadlines") as acquired:
        return run_sync(services.sweep_deadlines) if acquired else 0
