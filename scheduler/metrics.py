"""Every Prometheus metric of the project, defined once. Label values are bounded: never a node or job id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from pools.overview import PoolOverview

NODE_REGISTRATIONS = Counter(
    "scheduler_node_registrations_total",
    "Node registrations by result: ok, or the error code that rejected them.",
    ["result"],
)
NODE_HEARTBEATS = Counter(
    "scheduler_node_heartbeats_total", "Heartbeats processed, by result.", ["result"]
)
NODE_HEARTBEAT_SECONDS = Histogram(
    "scheduler_node_heartbeat_seconds",
    "Time to handle one heartbeat.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
NODE_BAD_MESSAGES = Counter(
    "scheduler_node_bad_messages_total", "Node messages refused, by error code.", ["code"]
)
NODE_MESSAGES = Counter("scheduler_node_messages_total", "Node messages received, by type.", ["type"])
NODE_ERRORS_REPORTED = Counter(
    "scheduler_node_errors_reported_total", "node_error messages sent by nodes, by reported code.", ["code"]
)
NODE_STATUS_CHANGES = Counter(
    "scheduler_node_status_changes_total", "Node status transitions.", ["from_status", "to_status"]
)
NODE_SOCKETS_OPEN = Gauge(
    "scheduler_node_sockets_open", "Node WebSockets open on this process.", multiprocess_mode="livesum"
)
NODE_HANDSHAKES_REJECTED = Counter(
    "scheduler_node_handshakes_rejected_total", "Node WebSocket handshakes refused, by reason.", ["reason"]
)
REDIS_ERRORS = Counter(
    "scheduler_redis_errors_total", "Redis operations that failed, by operation.", ["operation"]
)
REDIS_LATENCY = Histogram(
    "scheduler_redis_operation_seconds",
    "Latency of Redis scripts and commands, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
POOL_REBUILD_SECONDS = Histogram(
    "scheduler_pool_rebuild_seconds",
    "Time the leader takes to derive and write a new pool configuration.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RESERVATIONS = Counter(
    "scheduler_reservations_total", "Slot reservation attempts on nodes, by result and reason.", ["result", "reason"]
)
NO_AVAILABLE_NODE = Counter("scheduler_no_available_node_total", "Selections that found candidates but no free slot.")
POOL_EMPTY = Counter("scheduler_pool_empty_total", "Selections whose eligible pools had no member at all.")
DISPATCH_SECONDS = Histogram(
    "scheduler_dispatch_seconds",
    "Submit to job_assign written, for first attempts.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
TIMEOUTS = Counter("scheduler_job_timeouts_total", "Ack and job timeouts fired.", ["kind"])
RETRIES = Counter("scheduler_job_retries_total", "Attempts retried on another node, by the reason the last ended.", ["reason"])
JOBS_ENDED = Counter("scheduler_jobs_total", "Jobs by terminal state and reason.", ["state", "reason"])
STALE_NODE_MESSAGES = Counter(
    "scheduler_stale_node_messages_total", "Job messages for older attempts or jobs the node does not hold.", ["type"]
)
AUDIT_WRITTEN = Counter("scheduler_audit_entries_written_total", "Audit stream entries committed to the database.")
AUDIT_FAILURES = Counter("scheduler_audit_write_failures_total", "Audit batches that failed to commit.")
API_KEY_REJECTIONS = Counter("scheduler_api_auth_rejections_total", "REST requests refused by auth.", ["reason"])
API_ERRORS = Counter(
    "scheduler_api_errors_total", "REST and HTTP node-link error answers, by error code.", ["code"]
)


class LiveStateCollector:
    """Gauges that describe Redis state, computed once per scrape from Redis itself (not from counters a
    process keeps), so every instance serves the same truth and a dead process leaves nothing stale.

    Counters kept in Redis by Lua scripts (leader changes, refused stale writes) are served here too, as
    counters: they only grow, except when Redis loses its data, which Prometheus reads as a counter reset."""

    @staticmethod
    def _families() -> dict[str, Any]:
        # One definition for describe() and collect(), so the two cannot drift apart.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        return {
            "nodes": GaugeMetricFamily(
                "scheduler_nodes", "Registered nodes by status (from Redis).", labels=["status"]
            ),
            "pool_nodes": GaugeMetricFamily(
                "scheduler_pool_nodes",
                "Members of each pool (overflow included): total, and ready (ready and not drained).",
                labels=["pool", "state"],
            ),
            "pool_config_version": GaugeMetricFamily(
                "scheduler_pool_config_version", "Version of the pool configuration in Redis."
            ),
            "pool_epoch": GaugeMetricFamily(
                "scheduler_pool_epoch", "Highest fencing epoch granted to a pool leader (the current one's)."
            ),
            "pool_leader_present": GaugeMetricFamily(
                "scheduler_pool_leader_present", "1 while some process holds the pool leader lease."
            ),
            "pool_leader_changes": CounterMetricFamily(
                "scheduler_pool_leader_changes", "Pool leader lease acquisitions (each grants a new epoch)."
            ),
            "pool_stale_refusals": CounterMetricFamily(
                "scheduler_pool_stale_epoch_refusals",
                "Pool configuration writes refused because a newer leader epoch exists.",
            ),
            "up": GaugeMetricFamily(
                "scheduler_redis_up", "1 when this process could read the live state from Redis."
            ),
        }

    def describe(self):  # type: ignore[no-untyped-def]
        # Registration asks for names; answering here keeps it from calling collect() (and Redis) at import.
        yield from self._families().values()

    def collect(self):  # type: ignore[no-untyped-def]
        from nodes.models import NodeStatus
        from scheduler.redis import UNAVAILABLE, run_sync

        families = self._families()
        up = families.pop("up")
        try:
            live, pools = run_sync(_read_live_state)
        except UNAVAILABLE:
            up.add_metric([], 0)
            yield up
            return
        counts = dict.fromkeys(NodeStatus.values, 0)
        for node in live:
            counts[node["status"]] = counts.get(node["status"], 0) + 1
        for status, count in counts.items():
            families["nodes"].add_metric([status], count)
        for pool in pools.pools:
            families["pool_nodes"].add_metric([pool.name, "total"], pool.size)
            families["pool_nodes"].add_metric([pool.name, "ready"], pool.ready)
        families["pool_config_version"].add_metric([], pools.version)
        families["pool_epoch"].add_metric([], pools.highest_epoch)
        families["pool_leader_present"].add_metric([], int(pools.leader is not None))
        families["pool_leader_changes"].add_metric([], pools.leader_changes)
        families["pool_stale_refusals"].add_metric([], pools.stale_refusals)
        up.add_metric([], 1)
        yield from families.values()
        yield up


async def _read_live_state() -> tuple[list[dict[str, Any]], PoolOverview]:
    """Everything a scrape shows, read in one event loop: the nodes, then the pool overview."""
    from nodes.services import list_nodes
    from pools.overview import read_overview

    return await list_nodes(), await read_overview()
