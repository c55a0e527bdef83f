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
RESERVATION_GUESSES = Counter(
    "scheduler_reservation_guesses_total",
    "First reservations made in the round trip that creates the job, on a recently sampled member, by result.",
    ["result"],
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
JOBS_RECONCILED = Counter(
    "scheduler_jobs_reconciled_total",
    "Mirror rows the reconciler settled: an end recorded again (repaired) or a job Redis forgot (lost).",
    ["outcome"],
)
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
    "Placement claims: claimed, busy (another process is placing it), or taken_over (its placer died: the "
    "sweeper queued the job for the pump).",
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
# Hostile input (docs/security.md).
NODE_MESSAGES_THROTTLED = Counter(
    "scheduler_node_messages_throttled_total", "Node messages dropped for coming too fast, by type.", ["type"]
)
NODE_SOCKETS_TIMED_OUT = Counter(
    "scheduler_node_sockets_timed_out_total",
    "Node sockets closed for never registering or for going silent, by reason.",
    ["reason"],
)
WEB_CONNECTIONS_TIMED_OUT = Counter(
    "scheduler_web_connections_timed_out_total",
    "Connections closed for not sending a complete request head within WEB_HEADER_TIMEOUT_S (uvicorn).",
)
AUTH_FAILURES = Counter(
    "scheduler_auth_failures_total", "Wrong credentials presented, by kind (api_key, node_token, admin_login).", ["kind"]
)
AUTH_THROTTLED = Counter(
    "scheduler_auth_throttled_total",
    "Requests refused unchecked because their address failed authentication too often, by kind.",
    ["kind"],
)
PEER_JSON_REJECTED = Counter(
    "scheduler_peer_json_rejected_total",
    "Bodies and frames refused before validation (syntax, depth, non_finite, integer_range), by where.",
    ["where", "reason"],
)
API_KEY_REJECTIONS = Counter("scheduler_api_auth_rejections_total", "REST requests refused by auth.", ["reason"])
API_ERRORS = Counter(
    "scheduler_api_errors_total", "REST and HTTP node-link error answers, by error code.", ["code"]
)


def initialize_label_sets() -> None:
    """Create the known label combinations at zero in every process, so a counter exists (and `rate()` and the
    alert rules see a series) before its first event, instead of appearing only when something goes wrong.
    Label sets named by an app's own enums are created by that app (`jobs.apps`)."""
    from core import scripts

    for generation in ("0", "1", "2"):
        GC_PAUSE_SECONDS.labels(generation=generation)
    RESERVATIONS.labels(result="ok", reason="ok")
    for result in ("ok", "refused"):
        RESERVATION_GUESSES.labels(result=result)
    for refusal in ("not_ready", "draining", "stalled", "languages", "service", "unavailable", "full", "gone"):
        RESERVATIONS.labels(result="refused", reason=refusal)
    for operation in (*scripts.names(), "audit_record", "api", "channel_receive"):
        REDIS_ERRORS.labels(operation=operation)
    for lock in ("jobs.sweep_deadlines", "nodes.sweep_deadlines", "core.write_audit"):
        for result in ("acquired", "busy"):
            LOCK_ACQUISITIONS.labels(lock=lock, result=result)
    NO_AVAILABLE_NODE.inc(0)
    POOL_EMPTY.inc(0)
    for kind in ("api_key", "node_token", "admin_login"):
        AUTH_FAILURES.labels(kind=kind)
        AUTH_THROTTLED.labels(kind=kind)
    for reason in ("register", "idle"):
        NODE_SOCKETS_TIMED_OUT.labels(reason=reason)
    NODE_MESSAGES_THROTTLED.labels(type="node_heartbeat")


# --- Sessions (/ws/session) -------------------------------------------------------------------------------------
SESSIONS_OPEN = Gauge(
    "scheduler_sessions_open", "Client sessions open on this process.", multiprocess_mode="livesum"
)
SESSION_HANDSHAKES_REJECTED = Counter(
    "scheduler_session_handshakes_rejected_total", "Session WebSocket handshakes refused, by reason.", ["reason"]
)
SESSION_MESSAGES = Counter("scheduler_session_messages_total", "Session messages received, by type.", ["type"])
SESSION_REFUSALS = Counter(
    "scheduler_session_refusals_total",
    "Session messages refused or sessions not opened, by error code (INVALID_MESSAGE, RATE_LIMITED...).",
    ["code"],
)
SESSION_UTTERANCES = Counter(
    "scheduler_session_utterances_total", "Utterances cut from session audio or sent whole, by cut reason.", ["reason"]
)
SESSION_RESULTS = Counter(
    "scheduler_session_results_total", "Frames sent for utterances: translation_result, missing_result, asr_partial.", ["kind"]
)
SESSION_RESULT_SECONDS = Histogram(
    "scheduler_session_result_seconds",
    "From an utterance's cut (is_final, pause...) to its translation_result or missing_result leaving.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
