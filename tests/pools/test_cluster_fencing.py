"""End to end: a leader paused past its lease (SIGSTOP) is fenced: the other worker takes over with a higher
epoch and, once the paused one resumes, no configuration write of the old epoch lands anywhere."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from channels.db import database_sync_to_async

from pools.models import LeaderEpoch, PoolConfigVersion
from tests.pools import cluster_support
from tests.pools.cluster_support import (
    GIVE_UP_S,
    RENEW_S,
    TTL_S,
    Cluster,
    LeaseSampler,
    async_wait_until,
    drain_audit,
    epoch_regressions,
    overlapping_leaders,
    running_nodes,
    simulated_node,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The cluster's fixtures (kept out of tests/pools/conftest.py); `redis_url` replaces the session-wide one.
cluster, cluster_redis, node_token, pool_timings, redis_url = (
    cluster_support.cluster,
    cluster_support.cluster_redis,
    cluster_support.node_token,
    cluster_support.pool_timings,
    cluster_support.redis_url,
)

SLACK_S = 1.0


async def test_a_leader_paused_past_its_lease_stops_acting_and_no_write_of_its_epoch_follows_the_new_one(
    cluster: Cluster, node_token: str
):
    """SIGSTOP the leader's worker for longer than the lease TTL; meanwhile the other worker takes over (epoch
    + 1) and the pools change (a node of a new set registers, another node leaves). Then SIGCONT.

    Timings: lease TTL 15 s / renew 2 s / give-up 10 s / rebuild 10 s scaled to 3 s / 0.3 s / 2 s / 1 s; node
    heartbeat 15 s / timeout 45 s scaled to 0.5 s / 1.5 s. The worker stays stopped 5 s (> TTL 3 s, the
    analogue of 25 s > 15 s); the takeover must come within TTL + renew = 3.3 s (+ slack) of the stop; after
    SIGCONT the old leader gets 2 s (give-up time, ~7 renew rounds) to notice, log that it stopped acting, and
    it must never write.

    Shown in Redis (history list, `stale_refusals`) and in the database mirror (`PoolConfigVersion`, written
    by `core.audit.drain()` here): after the first write of the new epoch, no write of an older one."""
    web_a, web_b = cluster.webs
    staying = simulated_node(web_a, node_token, ["de", "en", "zh"], "de-en-zh")
    leaving = simulated_node(web_b, node_token, ["en", "zh"], "en-zh")
    async with running_nodes([staying, leaving]):
        holder, epoch = await cluster.leader()
        await async_wait_until(
            lambda: any(h["epoch"] == epoch and h["by"] == holder for h in cluster.history())
            and set(cluster.pools()) == {"en-zh", "de-en-zh"},
            5.0, "the first leader's configuration write with both pools", cluster=cluster,
        )  # fmt: skip
        victim = cluster.worker_name(holder)
        survivor = next(name for name in cluster.workers if name != victim)
        new_node = simulated_node(web_b, node_token, ["en", "fr"], "en-fr")

        with LeaseSampler(cluster.env["REDIS_URL"]) as sampler:
            stopped_wall, stopped_at = time.time(), time.monotonic()
            cluster.signal_worker(victim, signal.SIGSTOP)
            try:
                new_holder, new_epoch = await cluster.leader(timeout=TTL_S + RENEW_S + 5, other_than=holder)
                took = time.monotonic() - stopped_at
                # While the old leader sleeps the pools change: one created at once by web B, one removed
                # by the new leader's rebuild once its node went offline.
                async with running_nodes([new_node]):
                    await leaving.stop()
                    await async_wait_until(
                        lambda: set(cluster.pools()) == {"de-en-zh", "en-fr"}, 5.0,
                        "the new leader's rebuild without en-zh", cluster=cluster,
                    )  # fmt: skip
                    await asyncio.sleep(max(0.0, stopped_at + 5.0 - time.monotonic()))
                    resumed_wall = time.time()
                    cluster.signal_worker(victim, signal.SIGCONT)
                    await asyncio.sleep(GIVE_UP_S)
            finally:
                cluster.signal_worker(victim, signal.SIGCONT)

        assert new_holder == cluster.holder_of(survivor)
        assert new_epoch == epoch + 1
        assert took <= TTL_S + RENEW_S + SLACK_S, f"new leader {took:.2f} s after the stop"
        assert cluster.lease() == (new_holder, new_epoch), "the resumed worker took the lease back"
        assert {s.lease for s in sampler.samples if s.lease} <= {
            f"{holder}|{epoch}",
            f"{new_holder}|{new_epoch}",
        }

        # The old leader's own log: it stopped acting after it resumed, and never became leader again.
        victim_log = cluster.leader_log(victim)
        assert [e.kind for e in victim_log] == ["became", "stopped"], cluster.logs()
        stop_line = victim_log[1]
        assert stop_line.at >= resumed_wall - 0.05
        assert stop_line.reason in ("renewal overdue", "lease lost"), stop_line
        # Its acting window closed GIVE_UP_S after its last renewal (before the SIGSTOP) by its own clock,
        # which is earlier than its lease could expire: the terms of the two leaders never overlap.
        # (Its "stopped" line is logged only after SIGCONT, so its term is cut at that bound instead.)
        events = [victim_log[0], *cluster.leader_log(survivor)]
        assert overlapping_leaders(events, {victim: stopped_wall + GIVE_UP_S}) == []

        # Redis: nothing of the old epoch after the first write of the new one; the old holder never wrote
        # after it was stopped.
        history = cluster.history()
        assert epoch_regressions(history) == [], history
        first_new = next(h for h in history if h["epoch"] == new_epoch)
        assert all(h["epoch"] >= new_epoch for h in history if h["version"] >= first_new["version"]), history
        assert not [h for h in history if h["by"] == holder and h["at"] >= stopped_wall * 1000], history
        refusals = cluster.config()["stale_refusals"]
        refused_lines = cluster.log_lines(victim, "pool configuration write refused")
        assert refusals == len(refused_lines), (refusals, refused_lines)
        print(
            f"\nfencing: takeover {took:.2f} s after SIGSTOP; old leader stopped acting "
            f"{stop_line.at - resumed_wall:.2f} s after SIGCONT ({stop_line.reason!r}); stale_refusals={refusals}"
            f" ({'refused by Redis' if refusals else 'self-fenced before any write'})"
        )

        # The database mirror says the same, and the epoch mark is the new epoch.
        await drain_audit(cluster)
        rows = await database_sync_to_async(
            lambda: list(PoolConfigVersion.objects.values("version", "epoch", "generated_by"))
        )()
        assert {(r["version"], r["epoch"]) for r in rows} >= {(h["version"], h["epoch"]) for h in history}
        assert epoch_regressions(rows) == [], sorted(rows, key=lambda r: r["version"])
        assert not [r for r in rows if r["generated_by"] == holder and r["version"] > first_new["version"]]
        assert await database_sync_to_async(LeaderEpoch.floor)() == new_epoch
