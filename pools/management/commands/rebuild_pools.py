"""Ask the pool leader to rebuild the configuration from the live nodes now, and wait until it has.

With no leader (no Celery worker runs one), `--acquire` makes this process the leader for one round: it
takes the lease with a fresh epoch, rebuilds (forced), reconciles membership and gives the lease back.
"""

from __future__ import annotations

import asyncio
import os
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import runfile
from core.redis import UNAVAILABLE, run_sync
from pools import overview, rebuild
from pools.leader import Leader
from pools.services import current_config

POLL_S = 0.1


class Command(BaseCommand):
    help = (
        "Ask the pool leader to rebuild the pool configuration now and wait for the new version. "
        "With no leader, --acquire acts as the leader for one round."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=10.0,
            help="seconds to wait for the leader's new version (default 10)",
        )
        parser.add_argument(
            "--acquire",
            action="store_true",
            help="when no process holds the leader lease, take it for one round (fresh epoch), then release it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stderr.write(runfile.describe(settings, web=False))
        wait: float = options["wait"]
        if wait < 0:
            raise CommandError("--wait must be 0 or more")
        self.holder = f"rebuild_pools/{os.getpid()}"
        try:
            run_sync(self._rebuild, wait, options["acquire"])
        except UNAVAILABLE as exc:
            raise CommandError(f"nothing rebuilt: Redis is unavailable ({exc})") from None

    async def _rebuild(self, wait: float, acquire: bool) -> None:
        leader = await overview.read_leader()
        if leader is not None:
            await self._ask_leader(*leader, wait=wait)
        elif acquire:
            self.stdout.write("No process holds the pool leader lease: acting as the leader for one round.")
            await self._lead_one_round()
        else:
            raise CommandError(
                "nothing rebuilt: no process holds the pool leader lease (no Celery worker runs the leader). "
                "Start a worker (`make run`), or pass --acquire to act as the leader for one round."
            )
        await self._show_pools()

    async def _ask_leader(self, holder: str, epoch: int, *, wait: float) -> None:
        before = await rebuild.request_rebuild(self.holder)
        self.stdout.write(
            f"Asked the leader {holder} (epoch {epoch}) to rebuild; waiting up to {wait:g} s for a version after v{before}."
        )
        deadline = time.monotonic() + wait
        while (await current_config()).version <= before:
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"nothing rebuilt within {wait:g} s: the configuration is still v{before}. The leader "
                    f"rebuilds at its next round (every POOL_REBUILD_INTERVAL_S = {settings.POOL_REBUILD_INTERVAL_S:g} s); "
                    "the request stays for 60 s, so a longer --wait may see it."
                )
            await asyncio.sleep(POLL_S)

    async def _lead_one_round(self) -> None:
        before = (await current_config()).version
        leader = Leader(holder=self.holder)
        try:
            # The first round of a new leader acquires a fresh epoch, rebuilds forced and reconciles.
            await leader.step()
            epoch = leader.epoch
        finally:
            await leader.release()
        if epoch is None:
            raise CommandError(
                "nothing rebuilt: another process took the leader lease meanwhile; run again without --acquire"
            )
        after = (await current_config()).version
        if after <= before:
            raise CommandError(
                f"acquired epoch {epoch} but the rebuild wrote nothing (still v{before}); the log says why"
            )
        self.stdout.write(f"Rebuilt with epoch {epoch} and released the lease.")

    async def _show_pools(self) -> None:
        status = await overview.read_overview()
        written = f"{status.generated_at:%Y-%m-%d %H:%M:%S} UTC" if status.generated_at else "never"
        self.stdout.write(
            self.style.SUCCESS(f"Pool configuration v{status.version}")
            + f" (epoch {status.epoch}), written {written} by {status.generated_by or '-'}:"
        )
        for line in overview.pool_table(status.pools):
            self.stdout.write(f"  {line}")
