"""The bench-only Celery app of the baseline: one no-op task, Redis as broker and result backend.

The Redis URL comes from BENCH_CELERY_URL (the benchmark's own Redis, another database number than the
scheduler's). Settings are Celery's defaults except where a default would handicap a round-trip benchmark:
results are kept (the client waits on them), no task event messages, no rate-limit bookkeeping.
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/1")

app = Celery("bench_celery", broker=URL, backend=URL)
app.conf.update(
    task_ignore_result=False,
    result_expires=600,
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: the baseline measures Celery's round trip, not work."""
