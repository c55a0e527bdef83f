"""What a chaos run does: the stack's timings, the fleet, the load and the fault schedule, in a short
version (CI, 2-3 minutes) and a full one (the documented run).

The timings are scaled down from the defaults so that every timeout fires several times in a short run;
they are passed to every process of the stack as environment variables and read back through the
settings by the checker, which computes each job's deadline bound from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Every process of the stack gets these; the checker reads them back from django.conf.settings.
STACK_TIMINGS: dict[str, str] = {
    # The heartbeat timeout keeps production's ratio to the job timeout (45 s to 30 s): a hung node must be
    # found by something faster than its heartbeats stopping.
    "NODE_HEARTBEAT_INTERVAL_S": "2",
    "NODE_HEARTBEAT_TIMEOUT_S": "9",
    "NODE_WARMUP_TIMEOUT_S": "5",
    "NODE_SWEEP_INTERVAL_S": "0.5",
    "JOB_ACK_TIMEOUT_S": "3",
    "JOB_TIMEOUT_S": "6",
    "JOB_PENDING_TIMEOUT_S": "5",
    "JOB_SWEEP_INTERVAL_S": "0.25",
    "POOL_LEASE_TTL_S": "3",
    "POOL_LEASE_RENEW_S": "0.5",
    "POOL_LEADER_GIVE_UP_S": "2",
    "POOL_REBUILD_INTERVAL_S": "5",
    "AUDIT_INTERVAL_S": "0.5",
    # The mirror's reconciler and a reconnecting node's grace, where the stack has them.
    "JOB_RECONCILE_INTERVAL_S": "2",
    "JOB_RECONCILE_GRACE_S": "5",
    "NODE_RECONNECT_GRACE_S": "2",
    # Session clients end each utterance with is_final; a pause cut would split or merge utterances when a
    # frozen web process takes several seconds of chunks at once, so the checker could no longer match what a
    # client sent to what the server cut. Pause cutting is tested in tests/sessions/.
    "SESSIONS_PAUSE_MS": "600000",
}


@dataclass(frozen=True)
class Fault:
    """At `at_s` after the load starts, do `kind` to `target` for `hold_s` (a killed process is restarted
    after `hold_s`; a stopped one is continued)."""

    at_s: float
    kind: str
    target: str
    hold_s: float

    @property
    def label(self) -> str:
        return f"{self.kind} {self.target}"


# kind: "kill" (SIGKILL, then start again) or "stop" (SIGSTOP, then SIGCONT); Redis "kill" keeps its
# append-only file, "wipe" restarts it empty.
# target: "leader" (the Celery worker holding the pool lease), "web-1"/"web-2", "node:<profile>" (the
# first live node process of that profile; "node:fast*2" two of them), "redis".
ROUND: tuple[Fault, ...] = (
    Fault(8, "kill", "leader", 5),
    Fault(17, "stop", "web-1", 4),
    Fault(26, "kill", "web-2", 3),
    Fault(35, "stop", "node:fast*2", 10),
    Fault(47, "kill", "node:slow", 4),
    Fault(54, "stop", "leader", 6),
    Fault(64, "kill", "redis", 2),
    Fault(74, "wipe", "redis", 2),
)
ROUND_LENGTH_S = 85.0


@dataclass(frozen=True)
class Scenario:
    name: str
    fleet: dict[str, int]
    rate_per_s: float
    rounds: int
    faults: tuple[Fault, ...] = field(default=())
    # Session clients on /ws/session, half starting on each web process (chaos/sessions.py).
    sessions: int = 4

    @property
    def load_s(self) -> float:
        return self.rounds * ROUND_LENGTH_S

    def schedule(self) -> list[Fault]:
        return [
            Fault(fault.at_s + round_index * ROUND_LENGTH_S, fault.kind, fault.target, fault.hold_s)
            for round_index in range(self.rounds)
            for fault in (self.faults or ROUND)
        ]


SCENARIOS = {
    "short": Scenario("short", fleet={"fast": 4, "slow": 2, "failing": 1, "silent": 1}, rate_per_s=4.0, rounds=1),
    "full": Scenario("full", fleet={"fast": 8, "slow": 4, "failing": 2, "silent": 2}, rate_per_s=6.0, rounds=4),
}
