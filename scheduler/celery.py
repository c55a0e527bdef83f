"""The Celery app: periodic and background work only, never the per-job path."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from celery.worker.consumer import Consumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")

# Seconds between a worker's attempts to reach its broker (the same Redis) again after losing it. Celery's own
# 2, 4, 6 ... s left the audit writer, the sweeps and the reconciler idle for about 4 s after a 2 s Redis
# restart (make chaos), and a second loss inside that time would take the audit backlog with it. A refused
# connection costs nothing, so the worker tries again within a second, however long Redis stays away.
BROKER_RECONNECT = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 1.0}


class QuickReconnectConsumer(Consumer):
    """Celery's consumer, reconnecting on the schedule above (Celery has no setting for it: the consumer
    calls `ensure_connection` with kombu's defaults)."""

    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def quicker(*args: Any, **kwargs: Any) -> Any:
            return ensure(*args, **{**BROKER_RECONNECT, **kwargs})

        conn.ensure_connection = quicker
        return super().ensure_connected(conn)


app = Celery("scheduler")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def setup_periodic_tasks(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    # Every periodic task is safe to run twice or from two beats at once: each takes a named lock and skips
    # when it is held, and what it does is idempotent anyway.
    sender.add_periodic_task(settings.NODE_SWEEP_INTERVAL_S, sender.signature("nodes.sweep_deadlines"))
    sender.add_periodic_task(settings.AUDIT_INTERVAL_S, sender.signature("core.write_audit"))
    sender.add_periodic_task(max(1.0, settings.JOB_SWEEP_INTERVAL_S), sender.signature("jobs.sweep_deadlines"))
    sender.add_periodic_task(settings.JOB_RECONCILE_INTERVAL_S, sender.signature("jobs.reconcile"))
    if settings.METRICS_SNAPSHOT_MAX_AGE_S > 0:
        # Twice per lifetime of the shared copy, so scrapes never find it expired while the beat runs.
        sender.add_periodic_task(settings.METRICS_SNAPSHOT_MAX_AGE_S / 2, sender.signature("console.refresh_metrics_snapshot"))


class PoolLeaderStep(bootsteps.StartStopStep):
    """Each worker process competes for the pool leader lease in a thread of its own.

    Not a beat task: the lease must be renewed every 2 s by the process that holds it, and beat hands a
    task to whichever worker is free, so the holder would miss renewals at random.
    """

    # After the pool: prefork children are forked when the pool starts, and forking while this thread holds
    # a lock (logging, a connection pool) leaves the child deadlocked on its first task. Seen as an audit
    # writer that never ran in `make run`.
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.thread: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        from pools.leader import LeaderThread

        if settings.POOL_LEADER_ENABLED:
            self.thread = LeaderThread(holder=f"{worker.hostname}/{settings.INSTANCE_ID}")
            self.thread.start()

    def stop(self, worker: Any) -> None:
        if self.thread is not None:
            self.thread.stop()


app.steps["worker"].add(PoolLeaderStep)
