"""Long-poll without polling: a client waiting for a job (`?wait=`, a session socket) sleeps until the job
ends or, for session sockets relaying them, gets a partial result.

Whichever instance ends a job publishes its id on one Redis channel, from the script that makes the job
terminal (jobs/transitions.py), so the notice costs no round trip of its own. Each process that has waiting
clients keeps one subscription to that channel and wakes the waiters of that job; a waiter then reads the job
again. A submitter that waits watches the job before creating it, so its first read waits for the notice.

Pub/sub is at-most-once: a notice published while the subscription reconnects is lost. So every (re)subscribe
wakes all waiters to read again, and a waiter also reads again every `SAFETY_POLL_S` whatever happens. The
subscription ends once no client has waited for `IDLE_S`, so an idle process holds no extra connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator

from core import metrics
from core.redis import UNAVAILABLE, get_redis, keys

log = logging.getLogger(__name__)

SAFETY_POLL_S = 1.0
IDLE_S = 5.0
RETRY_MAX_S = 2.0


class _Listener:
    """The subscription of one event loop and the events of the jobs waited on there."""

    def __init__(self) -> None:
        self.events: dict[str, set[asyncio.Event]] = {}
        # Jobs that ended in this process while waited on here, as the ending script returned them: the
        # waiters answer from these instead of reading the job back (kept while someone waits on the job).
        self.ended: dict[str, dict[str, str]] = {}
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.idle_since = time.monotonic()

    def wake(self, job_id: str) -> None:
        for event in self.events.get(job_id, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self.events.values():
            for event in events:
                event.set()

    async def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.subscribed.clear()
            self.task = asyncio.create_task(self._run(), name="job-ended-listener")
        # Bounded: with Redis down the waiter still reads the job (and fails) on its own.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), SAFETY_POLL_S)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
            try:
                # Progress (a partial result) wakes the same waiters: they read the job again and see it.
                await pubsub.subscribe(keys().jobs_ended_channel, keys().jobs_progress_channel)
                self.subscribed.set()
                # Notices may have been missed while (re)subscribing: everyone reads again.
                self.wake_all()
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=SAFETY_POLL_S)
                    if message is not None and message.get("type") == "message":
                        self.wake(message["data"])
                    if not self.events and time.monotonic() - self.idle_since > IDLE_S:
                        # Decided without an await in between: a waiter arriving from now on starts a new task.
                        self.subscribed.clear()
                        self.task = None
                        return
            except UNAVAILABLE:
                self.subscribed.clear()
                metrics.REDIS_ERRORS.labels(operation="jobs_ended_subscribe").inc()
                log.warning("job-ended subscription lost; resubscribing", extra={"event": "redis_down"})
                self.wake_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                with contextlib.suppress(*UNAVAILABLE, RuntimeError):
                    await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self.events.setdefault(job_id, set()).add(event)
        try:
            await self.ensure_running()
            yield event
        finally:
            waiting = self.events.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self.events[job_id]
                    self.ended.pop(job_id, None)
            if not self.events:
                self.idle_since = time.monotonic()


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = weakref.WeakKeyDictionary()


def _listener() -> _Listener:
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None:
        listener = _listeners[loop] = _Listener()
    return listener


def waited_here(job_id: str) -> bool:
    """Whether a client of this event loop waits on `job_id`."""
    listener = _listeners.get(asyncio.get_running_loop())
    return listener is not None and job_id in listener.events


def hand_over(job_id: str, job: dict[str, str]) -> None:
    """The job as the script that ended it returned it, for this loop's waiters on it (woken now, before
    the published notice comes back)."""
    listener = _listeners.get(asyncio.get_running_loop())
    if listener is not None and job_id in listener.events:
        listener.ended[job_id] = job
        listener.wake(job_id)


def handed_over(job_id: str) -> dict[str, str] | None:
    """The ended job handed over for this loop's waiters, if any (a terminal job changes no more)."""
    listener = _listeners.get(asyncio.get_running_loop())
    return None if listener is None else listener.ended.get(job_id)


def watch(job_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
    """An event set when `job_id` may have ended or progressed (read the job to know); subscribed before it is yielded,
    so reading the job inside the block cannot miss an end that happens after the read."""
    return _listener().watch(job_id)

