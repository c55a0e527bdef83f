"""The pool leader: one process at a time holds a lease with a fencing epoch, rebuilds the configuration
from the live nodes and reconciles pool membership.

Rules that keep two leaders from ever both writing:
- the lease is acquired and compare-and-renewed in Lua (`pool_lease.lua`), and an expired lease can never
  be renewed: its holder must acquire again, which grants a new, higher epoch;
- a leader that has not renewed for `POOL_LEADER_GIVE_UP_S` by its own monotonic clock stops acting, even
  before it learns the lease is gone (it may have been paused);
- every configuration write carries the epoch and is refused by Redis once a newer epoch exists;
- the epoch is recorded in the database before the new leader acts, and acquisition starts above that
  mark, so the epoch never goes backwards, also after Redis lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from core import scripts
from core.redis import UNAVAILABLE, keys
from pools import rebuild
from pools.models import LeaderEpoch

log = logging.getLogger(__name__)


@dataclass
class Leader:
    holder: str
    clock: Callable[[], float] = time.monotonic
    epoch: int | None = None
    renewed_at: float = 0.0
    last_rebuild_at: float | None = None
    changes: list[tuple[str, int]] = field(default_factory=list)

    def acting(self) -> bool:
        """True while this process may act as leader: it holds an epoch renewed recently enough."""
        return self.epoch is not None and self.clock() - self.renewed_at < settings.POOL_LEADER_GIVE_UP_S

    async def step(self) -> None:
        """One round: renew (or give up), else try to acquire; when leading, rebuild when it is due."""
        if self.epoch is not None:
            await self._renew()
        if self.epoch is None:
            await self._acquire()
        if not self.acting():
            return
        requested = await rebuild.rebuild_requested()
        if requested or self._rebuild_due():
            forced = self.last_rebuild_at is None or requested
            self.last_rebuild_at = self.clock()
            await rebuild.rebuild_and_reconcile(self.epoch, self.holder, force=forced, still_leader=self.acting)

    def _rebuild_due(self) -> bool:
        return self.last_rebuild_at is None or self.clock() - self.last_rebuild_at >= settings.POOL_REBUILD_INTERVAL_S

    async def _lease(self, mode: str, floor: int = 0) -> list[str]:
        k = keys()
        return await scripts.run(
            "pool_lease",
            [k.pool_lease, k.pool_epoch, k.pool_leader_changes],
            [self.holder, int(settings.POOL_LEASE_TTL_S * 1000), floor, mode, "" if self.epoch is None else self.epoch],
        )

    async def _renew(self) -> None:
        if not self.acting():
            self._resign("renewal overdue")
            return
        sent_at = self.clock()
        result = await self._lease("renew")
        if result[0] == "RENEWED":
            # The lease runs from when the renewal was sent, never from when its answer arrived.
            self.renewed_at = sent_at
        else:
            self._resign("lease lost")

    async def _acquire(self) -> None:
        floor = await database_sync_to_async(LeaderEpoch.floor)()
        sent_at = self.clock()
        result = await self._lease("acquire", floor)
        if result[0] != "ACQUIRED":
            return
        epoch = int(result[1])
        try:
            await database_sync_to_async(LeaderEpoch.raise_to)(epoch)
        except Exception:
            # Acting on an epoch the database does not know could let it be granted twice after a Redis loss.
            log.exception("could not record the new epoch; giving the lease back", extra={"event": "leader_epoch_unsaved"})
            self.epoch = epoch
            await self.release()
            return
        self.epoch = epoch
        self.renewed_at = sent_at
        self.last_rebuild_at = None
        self.changes.append(("acquired", epoch))
        log.info("became pool leader", extra={"event": "leader_acquired", "reason": f"epoch {epoch}"})

    def _resign(self, reason: str) -> None:
        log.warning("stopped acting as pool leader", extra={"event": "leader_lost", "reason": reason})
        self.changes.append(("lost", self.epoch or 0))
        self.epoch = None

    async def release(self) -> None:
        if self.epoch is None:
            return
        try:
            await self._lease("release")
        finally:
            self.epoch = None

    async def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except UNAVAILABLE:
                log.warning("pool leader round skipped: Redis unavailable", extra={"event": "redis_down"})
            except Exception:
                log.exception("pool leader round failed", extra={"event": "leader_error"})
            await _sleep_unless(stop, settings.POOL_LEASE_RENEW_S)
        with contextlib.suppress(UNAVAILABLE):
            await self.release()


async def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(min(0.05, seconds))


class LeaderThread:
    """Runs a Leader in a daemon thread with its own event loop (inside a Celery worker process)."""

    def __init__(self, holder: str) -> None:
        self.leader = Leader(holder)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name="pool-leader", daemon=True)

    def _main(self) -> None:
        asyncio.run(self.leader.run(self.stop_event))

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
