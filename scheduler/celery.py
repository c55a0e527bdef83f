"""The Celery app: periodic and background work only, never the per-job path."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler.settings")

app = Celery("scheduler")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def setup_periodic_tasks(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    # Both tasks are safe to run twice or from two beats at once: they take a named lock and skip when it
    # is held, and what they do is idempotent anyway.
    sender.add_periodic_task(settings.NODE_SWEEP_INTERVAL_S, sender.signature("nodes.sweep_deadlines"))
    sender.add_periodic_task(settings.AUDIT_INTERVAL_S, sender.signature("scheduler.write_audit"))
