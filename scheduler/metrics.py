"""Every Prometheus metric of the project, defined once. Label values are bounded: never a node or job id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
AUDIT_WRITTEN = Counter("scheduler_audit_entries_written_total", "Audit stream entries committed to the database.")
AUDIT_FAILURES = Counter("scheduler_audit_write_failures_total", "Audit batches that failed to commit.")
API_KEY_REJECTIONS = Counter("scheduler_api_auth_rejections_total", "REST requests refused by auth.", ["reason"])
API_ERRORS = Counter(
    "scheduler_api_errors_total", "REST and HTTP node-link error answers, by error code.", ["code"]
)


class LiveStateCollector:
    """Gauges that describe Redis state, computed once per scrape from Redis itself (not from counters a
    process keeps), so every instance serves the same truth and a dead process leaves nothing stale."""

    def describe(self):  # type: ignore[no-untyped-def]
        # Registration asks for names; answering here keeps it from calling collect() (and Redis) at import.
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("scheduler_nodes", "Registered nodes by status (from Redis).", labels=["status"])
        yield GaugeMetricFamily("scheduler_redis_up", "1 when this process could read the live state from Redis.")

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import GaugeMetricFamily

        from nodes.models import NodeStatus
        from nodes.services import list_nodes
        from scheduler.redis import UNAVAILABLE, run_sync

        nodes = GaugeMetricFamily("scheduler_nodes", "Registered nodes by status (from Redis).", labels=["status"])
        up = GaugeMetricFamily("scheduler_redis_up", "1 when this process could read the live state from Redis.")
        try:
            live = run_sync(list_nodes)
        except UNAVAILABLE:
            up.add_metric([], 0)
            yield up
            return
        counts = dict.fromkeys(NodeStatus.values, 0)
        for node in live:
            counts[node["status"]] = counts.get(node["status"], 0) + 1
        for status, count in counts.items():
            nodes.add_metric([status], count)
        up.add_metric([], 1)
        yield nodes
        yield up
