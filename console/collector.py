"""The live-state gauges of `/metrics`: read from Redis through the same cluster snapshot as the live page and
`cluster_status` (console/cluster.py), so every instance serves the same truth. That read walks every node
and pool, so one copy of it is shared through Redis by every scrape of every instance for
METRICS_SNAPSHOT_MAX_AGE_S, refreshed by the Celery beat (console/tasks.py)."""

from __future__ import annotations

import json
from typing import Any


class LiveStateCollector:
    """Gauges that describe Redis state, computed once per scrape from one cluster snapshot (not from values a
    process keeps), so every instance serves the same truth and a dead process leaves nothing stale.

    Counters kept in Redis by Lua scripts (leader changes, refused stale writes) are served here too, as
    counters: they only grow, except when Redis loses its data, which Prometheus reads as a counter reset."""

    @staticmethod
    def _families() -> dict[str, Any]:
        # One definition for describe() and collect(), so the two cannot drift apart.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        return {
            "nodes": gauge("scheduler_nodes", "Registered nodes by status (from Redis).", labels=["status"]),
            "pool_nodes": gauge(
                "scheduler_pool_nodes",
                "Members of each pool (overflow included): total, and ready (ready and not drained).",
                labels=["pool", "state"],
            ),
            "pool_slots": gauge(
                "scheduler_pool_slots",
                "Job slots of each pool's members: capacity (declared), reserved (assigned, not yet taken), running.",
                labels=["pool", "state"],
            ),
            "jobs_in_flight": gauge(
                "scheduler_jobs_in_flight", "Jobs not yet in a terminal state, by state (from Redis).", labels=["state"]
            ),
            "jobs_waiting": gauge("scheduler_jobs_waiting", "Jobs waiting in the pending queue for a free slot."),
            "instances": gauge("scheduler_instances", "Web instances advertising themselves in Redis."),
            "audit_backlog": gauge("scheduler_audit_backlog_entries", "Audit entries not yet written to the database."),
            "audit_lag": gauge("scheduler_audit_lag_seconds", "Age of the oldest audit entry not yet written; 0 when none."),
            "audit_dead": gauge("scheduler_audit_dead_letters", "Audit entries moved to the dead-letter stream."),
            "pool_config_version": gauge("scheduler_pool_config_version", "Version of the pool configuration in Redis."),
            "pool_epoch": gauge(
                "scheduler_pool_epoch", "Highest fencing epoch granted to a pool leader (the current one's)."
            ),
            "pool_leader_present": gauge(
                "scheduler_pool_leader_present", "1 while some process holds the pool leader lease."
            ),
            "pool_leader_changes": counter(
                "scheduler_pool_leader_changes", "Pool leader lease acquisitions (each grants a new epoch)."
            ),
            "pool_stale_refusals": counter(
                "scheduler_pool_stale_epoch_refusals",
                "Pool configuration writes refused because a newer leader epoch exists.",
            ),
            "up": gauge("scheduler_redis_up", "1 when this process could read the live state from Redis."),
        }

    def describe(self):  # type: ignore[no-untyped-def]
        # Registration asks for names; answering here keeps it from calling collect() (and Redis) at import.
        yield from self._families().values()

    def collect(self):  # type: ignore[no-untyped-def]
        from django.conf import settings

        from core.redis import UNAVAILABLE, run_sync

        families = self._families()
        up = families.pop("up")
        try:
            rows = run_sync(shared_rows, settings.METRICS_SNAPSHOT_MAX_AGE_S)
        except UNAVAILABLE:
            up.add_metric([], 0)
            yield up
            return
        for key, samples in rows.items():
            for labels, value in samples:
                families[key].add_metric(labels, value)
        up.add_metric([], 1)
        yield from families.values()
        yield up


Rows = dict[str, list[tuple[list[str], float]]]


class _Rows:
    """Stands in for the metric families while a snapshot is turned into samples: what `_fill` adds to a
    family is kept as (label values, value), which is what the shared copy in Redis holds."""

    class _Family:
        def __init__(self, rows: list[tuple[list[str], float]]) -> None:
            self.rows = rows

        def add_metric(self, labels: list[str], value: float) -> None:
            self.rows.append((list(labels), value))

    def __init__(self) -> None:
        self.rows: Rows = {}

    def __getitem__(self, key: str) -> Any:
        return _Rows._Family(self.rows.setdefault(key, []))


async def live_rows() -> Rows:
    """The live-state samples, read from Redis now (every node and pool: work that grows with the fleet)."""
    from console.cluster import read_snapshot

    rows = _Rows()
    _fill(rows, await read_snapshot())  # type: ignore[arg-type]
    return rows.rows


async def refresh_shared_rows(max_age_s: float) -> Rows:
    """Read the live state and store it as the copy every scrape of every instance serves for `max_age_s`."""
    from core.redis import get_redis, keys

    rows = await live_rows()
    if max_age_s > 0:
        await get_redis().set(keys().metrics_snapshot, json.dumps(rows), px=max(1, int(max_age_s * 1000)))
    return rows


async def cached_rows() -> Rows | None:
    """The shared copy when one lives (one GET), else None."""
    from core.redis import get_redis, keys

    cached = await get_redis().get(keys().metrics_snapshot)
    if cached is None:
        return None
    return {key: [(labels, value) for labels, value in samples] for key, samples in json.loads(cached).items()}


async def shared_rows(max_age_s: float) -> Rows:
    """The live-state samples as of at most `max_age_s` ago: the shared copy while it lives (one GET), else a
    fresh read, stored for the others. The Celery beat refreshes the copy before it expires, so web processes
    read the fleet only when no beat runs (then one read per instance per interval at most)."""
    if max_age_s <= 0:
        return await live_rows()
    cached = await cached_rows()
    if cached is not None:
        return cached
    return await refresh_shared_rows(max_age_s)


def _fill(families: dict[str, Any], snapshot: Any) -> None:
    from jobs.models import TERMINAL_STATES, JobState

    for status, count in snapshot.nodes_by_status.items():
        families["nodes"].add_metric([status], count)
    for pool in snapshot.pools.pools:
        families["pool_nodes"].add_metric([pool.name, "total"], pool.size)
        families["pool_nodes"].add_metric([pool.name, "ready"], pool.ready)
        for state in ("capacity", "reserved", "running"):
            families["pool_slots"].add_metric([pool.name, state], getattr(pool, state))
    for state in JobState.values:
        if state not in TERMINAL_STATES:
            families["jobs_in_flight"].add_metric([state], snapshot.jobs_in_flight.get(state, 0))
    families["jobs_waiting"].add_metric([], snapshot.jobs_waiting)
    families["instances"].add_metric([], sum(instance.advertised for instance in snapshot.instances))
    families["audit_backlog"].add_metric([], snapshot.audit.backlog)
    families["audit_lag"].add_metric([], snapshot.audit.lag_s)
    families["audit_dead"].add_metric([], snapshot.audit.dead_letters)
    pools = snapshot.pools
    families["pool_config_version"].add_metric([], pools.version)
    families["pool_epoch"].add_metric([], pools.highest_epoch)
    families["pool_leader_present"].add_metric([], int(pools.leader is not None))
    families["pool_leader_changes"].add_metric([], pools.leader_changes)
    families["pool_stale_refusals"].add_metric([], pools.stale_refusals)


