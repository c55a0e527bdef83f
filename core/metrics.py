"""Every Prometheus metric of the project, defined once. Label values are bounded: never a node or job id."""

from __future__ import annotations

from typing import Any

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
# Stalls of a web process: every message of every socket on it waits while its event loop is held.
EVENT_LOOP_LAG_SECONDS = Histogram(
    "scheduler_event_loop_lag_seconds",
    "How late a web process's event loop woke a timer (sampled every 0.25 s): the wait any message saw then.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GC_PAUSE_SECONDS = Histogram(
    "scheduler_gc_pause_seconds",
    "Cyclic garbage collector passes of a web process, by generation: each one holds its event loop.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
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
JOBS_SUBMITTED = Counter("scheduler_jobs_submitted_total", "Job submissions accepted, by whether they created a job.", ["result"])
POOL_DEMAND = Counter(
    "scheduler_pool_demand_total",
    "Placement attempts by eligible pool (overflow included): jobs arriving for the pool's languages.",
    ["pool"],
)
JOB_CLAIMS = Counter(
    "scheduler_job_claims_total",
    "Attempts to take a job's placement claim: claimed, or busy (another process is placing it).",
    ["result"],
)
LOCK_ACQUISITIONS = Counter(
    "scheduler_lock_acquisitions_total",
    "Named locks of periodic work: acquired, or busy (another run holds it, so this one skips).",
    ["lock", "result"],
)
LOCK_HELD_SECONDS = Histogram(
    "scheduler_lock_held_seconds",
    "How long periodic work held its named lock.",
    ["lock"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0),
)
STATS_SAMPLES = Counter("scheduler_stats_samples_total", "Points this process added to the live page's history.")
METRICS_REFUSALS = Counter("scheduler_metrics_refusals_total", "Scrapes of /metrics refused, by reason.", ["reason"])
API_KEY_REJECTIONS = Counter("scheduler_api_auth_rejections_total", "REST requests refused by auth.", ["reason"])
API_ERRORS = Counter(
    "scheduler_api_errors_total", "REST and HTTP node-link error answers, by error code.", ["code"]
)


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
        from core.cluster import read_snapshot
        from core.redis import UNAVAILABLE, run_sync

        families = self._families()
        up = families.pop("up")
        try:
            snapshot = run_sync(read_snapshot)
        except UNAVAILABLE:
            up.add_metric([], 0)
            yield up
            return
        _fill(families, snapshot)
        up.add_metric([], 1)
        yield from families.values()
        yield up


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


def initialize_label_sets() -> None:
    """Create the known label combinations at zero in every process, so a counter exists (and `rate()` and the
    alert rules see a series) before its first event, instead of appearing only when something goes wrong."""
    from core import scripts
    from jobs.models import FailureReason, JobState

    for kind in ("ack", "job"):
        TIMEOUTS.labels(kind=kind)
    for generation in ("0", "1", "2"):
        GC_PAUSE_SECONDS.labels(generation=generation)
    JOBS_ENDED.labels(state=JobState.DONE, reason="none")
    for reason in FailureReason.values:
        JOBS_ENDED.labels(state=JobState.FAILED, reason=reason)
        RETRIES.labels(reason=reason)
    JOBS_ENDED.labels(state=JobState.CANCELLED, reason=FailureReason.CANCELLED)
    RESERVATIONS.labels(result="ok", reason="ok")
    for refusal in ("not_ready", "draining", "languages", "service", "unavailable", "full", "gone"):
        RESERVATIONS.labels(result="refused", reason=refusal)
    for operation in (*scripts.names(), "audit_record", "api", "channel_receive"):
        REDIS_ERRORS.labels(operation=operation)
    for result in ("created", "duplicate"):
        JOBS_SUBMITTED.labels(result=result)
    for result in ("claimed", "busy"):
        JOB_CLAIMS.labels(result=result)
    for lock in ("jobs.sweep_deadlines", "nodes.sweep_deadlines", "core.write_audit"):
        for result in ("acquired", "busy"):
            LOCK_ACQUISITIONS.labels(lock=lock, result=result)
    NO_AVAILABLE_NODE.inc(0)
    POOL_EMPTY.inc(0)
