"""Judges a chaos run from its history: the client's and the nodes' JSON lines, the fault log, the Redis
samples, and `final.json` (the API, the database and Redis once the load was over).

Invariants (each row of the table counts what was checked and what broke it):

- I1 every accepted job ends exactly once within its deadline bound: a terminal answer reached the client,
  the job's end came no later than `deadline_bound_s` after its creation, and nothing read afterwards (a
  second answer, the API at the end) shows another end or has forgotten it;
- I2 no attempt executed twice: no (job, attempt) reached two nodes or one node twice, and no node got a
  job id it had already seen (the real node refuses those);
- I3 never over capacity: in every sample, each node's live reservations plus running attempts stay within
  its declared maximum;
- I4 counters and slot sets back to zero at rest: no live slot on any node, nothing pending, no deadline
  left, no job hash in a live state;
- I5 the fencing epoch never goes backwards: lease, counter and configuration epochs over the samples, and
  the database's high-water mark at least the highest one seen;
- I6 the database mirror equals the end states: same state and reason, an end time, the same attempts,
  and no audit entry given up on;
- I7 every utterance a session client sent gets exactly one final frame within the bound, unless a fault
  closed its socket first (reported by name): `chaos/sessions_check.py`.

Pure: no process, no settings, no network; `check(run_dir)` can judge a run again long after it ended.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.sessions_check import check_sessions, session_observations, session_totals

# Longer than one selection ever holds a job (jobs/transitions.py CLAIM_TTL_MS): a job whose placer died is
# taken over after it.
CLAIM_TTL_S = 5.0
# Sweeps run every JOB_SWEEP_INTERVAL_S on each web process and at least every second from beat.
SWEEP_SLACK_S = 1.0
EXAMPLES = 5


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        # A process killed mid-write can leave a torn last line; nothing after it is lost.
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def deadline_bound_s(timings: dict[str, float]) -> float:
    """The longest a job may live with no fault about: every attempt may wait for capacity up to the pending
    timeout and then run to the job timeout, each fired by a sweep; on top, a node's death is noticed within
    the heartbeat timeout and an orphaned selection is taken over after its claim expires."""
    per_attempt = timings["JOB_PENDING_TIMEOUT_S"] + timings["JOB_TIMEOUT_S"] + SWEEP_SLACK_S
    return timings["JOB_MAX_ATTEMPTS"] * per_attempt + timings["NODE_HEARTBEAT_TIMEOUT_S"] + CLAIM_TTL_S


@dataclass
class Row:
    name: str
    title: str
    checked: int = 0
    violations: int = 0
    details: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    # Not violations: losses architecture.md documents as the cost of a Redis wipe without persistence,
    # each one matched against a window computed from the settings (`lost_in_audit_window`).
    documented: Counter[str] = field(default_factory=Counter)
    documented_examples: list[str] = field(default_factory=list)
    documented_label: str = "documented cost of a Redis wipe"

    def fail(self, kind: str, example: str) -> None:
        self.violations += 1
        self.details[kind] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{kind}: {example}")

    def document(self, kind: str, example: str) -> None:
        self.documented[kind] += 1
        if len(self.documented_examples) < EXAMPLES:
            self.documented_examples.append(f"{kind}: {example}")

    @property
    def ok(self) -> bool:
        return self.violations == 0


@dataclass
class Report:
    rows: list[Row]
    observations: list[tuple[str, str]]
    faults: list[dict[str, Any]]
    totals: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def format(self) -> str:
        lines = ["", "Run: " + ", ".join(f"{name} {value}" for name, value in self.totals.items()), ""]
        lines.append(f"{'invariant':<58} {'checked':>9} {'violations':>10}  result")
        for row in self.rows:
            lines.append(f"{row.name + ' ' + row.title:<58} {row.checked:>9} {row.violations:>10}  {'ok' if row.ok else 'FAILED'}")
            for kind, count in row.details.most_common():
                lines.append(f"    {count:>6} {kind}")
            for example in row.examples:
                lines.append(f"           e.g. {example}")
            for kind, count in row.documented.most_common():
                lines.append(f"    {count:>6} not counted, {row.documented_label}: {kind}")
            for example in row.documented_examples:
                lines.append(f"           e.g. {example}")
        lines += ["", "Faults (times from the fault's start; in flight = jobs live when it began):"]
        lines.append(f"{'t (s)':>7}  {'fault':<22} {'hold':>5} {'back':>6} {'in flight':>9} {'settled':>8} {'leader':>7}  notes")
        for fault in self.faults:
            lines.append(
                f"{fault['at']:>7.1f}  {fault['label']:<22} {fault['hold']:>5.1f} {_s(fault.get('back')):>6} "
                f"{fault['in_flight']:>9} {_s(fault.get('settled')):>8} {_s(fault.get('leader')):>7}  {fault.get('notes', '')}"
            )
        lines += ["", "Observations:"]
        lines += [f"  {name}: {value}" for name, value in self.observations]
        lines += ["", "ALL INVARIANTS HOLD" if self.ok else "INVARIANTS VIOLATED: " + ", ".join(r.name for r in self.rows if not r.ok)]
        return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def check(run_dir: Path) -> Report:
    timings = json.loads((run_dir / "timings.json").read_text())
    client = read_lines(run_dir / "client.jsonl")
    nodes = read_lines(run_dir / "nodes.jsonl")
    history = read_lines(run_dir / "history.jsonl")
    sessions = read_lines(run_dir / "sessions.jsonl")
    final = json.loads((run_dir / "final.json").read_text())
    faults = [event for event in history if event["ev"] == "fault"]
    samples = [event for event in history if event["ev"] == "sample"]
    bound = deadline_bound_s(timings)

    submits = {event["job"]: event for event in client if event["ev"] == "submit"}
    ends: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in client:
        if event["ev"] == "end":
            ends[event["job"]].append(event)
    rows = [
        check_endings(submits, ends, final, faults, bound, timings),
        check_attempts(nodes),
        check_capacity(samples),
        check_rest(final["redis"]),
        check_epochs(samples, final["database"]["epoch_floor"]),
        check_mirror(submits, ends, final, faults, timings),
        check_sessions(
            sessions, faults, bound, lambda start, end: _outage_overlap(faults, start, end, timings),
            Row("I7", "every utterance sent gets one final frame, in bound", documented_label="reported"),
        ),
    ]
    load_start = min((event["t"] for event in client), default=0.0)
    fault_rows = fault_table(faults, submits, ends, samples, timings, load_start)
    observations = observe(client, nodes, final, submits, ends, samples, load_start)
    states = Counter(ends[job][0]["state"] if ends.get(job) else "no end" for job in submits)
    totals = {
        "jobs accepted": len(submits),
        "ended": dict(sorted(states.items())),
        "attempts seen by nodes": sum(1 for e in nodes if e["ev"] == "assign"),
        "samples": len(samples),
        "faults": len(faults),
        "deadline bound": f"{bound:.0f} s + outages",
        **session_totals(sessions),
    }
    observations += session_observations(sessions)
    return Report(rows, observations, fault_rows, totals)


def _outage_overlap(faults: list[dict[str, Any]], start: float, end: float, timings: dict[str, float]) -> float:
    """Extra time a job may legitimately take for the faults that overlap its life: the fault's length, and a
    heartbeat timeout for the fleet to find its way back afterwards."""
    extra = 0.0
    for fault in faults:
        if fault.get("skipped") or fault["target"] == "leader":
            continue
        if fault["start"] <= end and fault["end"] >= start:
            extra += fault["end"] - fault["start"] + timings["NODE_HEARTBEAT_TIMEOUT_S"]
    return extra


Events = list[dict[str, Any]]


def check_endings(
    submits: dict[str, Any], ends: dict[str, Events], final: dict[str, Any], faults: Events, bound: float,
    timings: dict[str, float],
) -> Row:
    row = Row("I1", "every accepted job ends once, within its bound")
    for job_id, submit in submits.items():
        row.checked += 1
        seen = ends.get(job_id, [])
        view = final["api"].get(job_id, {})
        lost = lost_in_audit_window(job_id, submit, final, faults, timings)
        if not seen:
            answer = view.get("state") or f"HTTP {view.get('http')}"
            if lost:
                row.document("accepted within the audit interval before a wipe, never answered", f"{job_id} {lost}")
            else:
                row.fail("no terminal answer reached the client", f"{job_id} (now: {answer})")
            continue
        first = seen[0]
        outcomes = {(end["state"], end["reason"]) for end in seen}
        now_reason = (view.get("error") or {}).get("code") or ""
        if view.get("http") == 404 and lost:
            row.document("accepted within the audit interval before a wipe, end forgotten", f"{job_id} {lost}")
        elif view.get("http") == 404:
            row.fail("end no longer answered (HTTP 404 afterwards)", job_id)
        elif view.get("http") == 200 and (view.get("state"), now_reason) != (first["state"], first["reason"]) and (
            settled := ended_in_audit_window(first, view.get("state"), now_reason, faults, timings)
        ):
            row.document("ended within the audit interval before a wipe, later settled STATE_LOST", f"{job_id} {settled}")
        elif view.get("http") == 200 and view.get("state") != first["state"]:
            row.fail("end changed afterwards", f"{job_id} {first['state']} then {view.get('state')}")
        elif view.get("http") == 200 and view.get("state") == "FAILED" and now_reason != first["reason"]:
            row.fail("end changed afterwards", f"{job_id} FAILED {first['reason']} then {now_reason}")
        elif len(outcomes) > 1:
            row.fail("two different ends answered", f"{job_id} {sorted(outcomes)}")
        created = (first.get("created_at") or submit.get("created_at") or 0) / 1000
        ended = (first.get("ended_at") or first["t"] * 1000) / 1000
        allowed = bound + _outage_overlap(faults, created, ended, timings)
        if ended - created > allowed:
            row.fail("ended after its bound", f"{job_id} after {ended - created:.1f} s (bound {allowed:.1f} s)")
    return row


def lost_in_audit_window(
    job_id: str, submit: dict[str, Any], final: dict[str, Any], faults: Events, timings: dict[str, float]
) -> str:
    """Why a job is the documented cost of a Redis wipe, or "" when it is not. architecture.md ("What a Redis
    loss costs"): without persistence, a job accepted within the last audit interval, whose creation never
    reached the database, is unknown (404). So only a job that the API answers 404, that has no database
    row, and that was accepted no more than AUDIT_INTERVAL_S (the stack's setting) before a wipe began."""
    interval = timings.get("AUDIT_INTERVAL_S")
    if interval is None or final["api"].get(job_id, {}).get("http") != 404 or job_id in final["database"]["jobs"]:
        return ""
    created = (submit.get("created_at") or 0) / 1000
    for fault in faults:
        if fault.get("kind") == "wipe" and not fault.get("skipped") and 0 <= fault["start"] - created <= interval:
            return f"(accepted {fault['start'] - created:.2f} s before the wipe; audit interval {interval:g} s)"
    return ""


def ended_in_audit_window(end: dict[str, Any], now_state: Any, now_reason: Any, faults: Events, timings: dict[str, float]) -> str:
    """Why a changed end is the documented cost of a Redis wipe, or "" when it is not. architecture.md ("What a
    Redis loss costs"): without persistence, an end answered within the last audit interval may still have been
    on the audit stream the wipe took, so the database row stayed live and the reconciler settles it `FAILED
    STATE_LOST`. So only a job whose later answer (API or database row) is exactly FAILED STATE_LOST and whose
    first answered end (its Redis end time) came no more than AUDIT_INTERVAL_S before a wipe began."""
    interval = timings.get("AUDIT_INTERVAL_S")
    ended = (end.get("ended_at") or 0) / 1000
    if interval is None or not ended or (now_state, now_reason) != ("FAILED", "STATE_LOST"):
        return ""
    for fault in faults:
        if fault.get("kind") == "wipe" and not fault.get("skipped") and 0 <= fault["start"] - ended <= interval:
            return f"(answered {end.get('state')} {fault['start'] - ended:.2f} s before the wipe; audit interval {interval:g} s)"
    return ""


def check_attempts(nodes: list[dict[str, Any]]) -> Row:
    row = Row("I2", "no attempt executed twice")
    by_attempt: dict[tuple[str, Any], list[str]] = defaultdict(list)
    for event in nodes:
        if event["ev"] == "assign":
            by_attempt[(event["job"], event["attempt"])].append(event["proc"])
            if event.get("seen_before"):
                row.fail("job sent again to a node that had it", f"{event['job']} #{event['attempt']} on {event['proc']}")
    for (job_id, attempt), procs in by_attempt.items():
        row.checked += 1
        if len(procs) > 1:
            row.fail("attempt delivered more than once", f"{job_id} #{attempt} on {', '.join(procs)}")
    return row


def check_capacity(samples: list[dict[str, Any]]) -> Row:
    row = Row("I3", "never over capacity (sampled)")
    for sample in samples:
        for node_id, (maximum, reserved, running, _status) in sample["nodes"].items():
            if maximum is None:
                continue
            row.checked += 1
            if reserved + running > maximum:
                row.fail("node over capacity", f"{node_id} {reserved} reserved + {running} running > {maximum}")
    return row


def check_rest(redis_state: dict[str, Any]) -> Row:
    row = Row("I4", "slots, queues and live jobs back to zero at rest")
    for node_id, node in redis_state["nodes"].items():
        row.checked += 1
        for member in node["live"]:
            row.fail("slot still held", f"{node_id} holds {member}")
    row.checked += 3
    if redis_state["pending"]:
        row.fail("jobs still pending", str(redis_state["pending"]))
    for job_id in redis_state["deadlines"]:
        row.fail("deadline left in the index", job_id)
    for key in redis_state["live_jobs"]:
        row.fail("job still live", key)
    return row


def check_epochs(samples: list[dict[str, Any]], floor: int) -> Row:
    row = Row("I5", "fencing epoch never goes backwards")
    highest: dict[str, tuple[int, float]] = {}
    for sample in samples:
        lease = sample.get("lease") or ""
        lease_epoch = lease.rpartition("|")[2]
        readings = {"counter": sample.get("epoch"), "lease": int(lease_epoch) if lease_epoch.isdigit() else None,
                    "config": sample.get("config_epoch")}  # fmt: skip
        for name, value in readings.items():
            if value is None:
                continue
            row.checked += 1
            top = highest.get(name)
            if top is not None and value < top[0]:
                row.fail(f"{name} epoch went back", f"{top[0]} -> {value}")
            if top is None or value > top[0]:
                highest[name] = (value, sample["t"])
    seen = max((value for value, _ in highest.values()), default=0)
    row.checked += 1
    if floor < seen:
        row.fail("database high-water mark below an epoch seen", f"{floor} < {seen}")
    return row


def check_mirror(
    submits: dict[str, Any], ends: dict[str, list[dict[str, Any]]], final: dict[str, Any], faults: Events,
    timings: dict[str, float],
) -> Row:
    """The end each job reached (the first terminal answer its client got) against its database rows."""
    row = Row("I6", "database mirror equals the end states")
    rows = final["database"]["jobs"]
    for job_id in submits:
        if not ends.get(job_id):
            continue
        end = ends[job_id][0]
        row.checked += 1
        db = rows.get(job_id)
        if db is None:
            lost = lost_in_audit_window(job_id, submits[job_id], final, faults, timings)
            if lost:
                row.document("accepted within the audit interval before a wipe, no row", f"{job_id} {lost}")
            else:
                row.fail("job missing from the database", job_id)
            continue
        if (db["state"], db["reason"]) != (end["state"], end["reason"]) and (
            settled := ended_in_audit_window(end, db["state"], db["reason"], faults, timings)
        ):
            row.document("ended within the audit interval before a wipe, row settled STATE_LOST", f"{job_id} {settled}")
            continue
        if db["state"] != end["state"]:
            row.fail("state differs", f"{job_id} database {db['state']}, answered {end['state']}")
            continue
        if end["state"] == "FAILED" and db["reason"] != end["reason"]:
            row.fail("reason differs", f"{job_id} database {db['reason']}, answered {end['reason']}")
        if db["ended_at"] is None:
            row.fail("no end time", job_id)
        answered = {str(a["attempt_id"]): a for a in end.get("attempts") or []}
        if answered and set(answered) != set(db["attempts"]):
            row.fail("attempts differ", f"{job_id} database {sorted(db['attempts'])}, answered {sorted(answered)}")
            continue
        for attempt_id, attempt in answered.items():
            if db["attempts"][attempt_id]["state"] != attempt["state"]:
                row.fail("attempt state differs", f"{job_id} #{attempt_id} database {db['attempts'][attempt_id]['state']}, answered {attempt['state']}")
    dead = final["redis"].get("audit_dead") or 0
    if dead:
        row.fail("audit entries given up on", str(dead))
    return row


def fault_table(
    faults: Events, submits: dict[str, Any], ends: dict[str, Events], samples: Events, timings: dict[str, float],
    load_start: float,
) -> list[dict[str, Any]]:
    lives = []
    for job_id, submit in submits.items():
        end = ends[job_id][0] if ends.get(job_id) else {}
        created = (end.get("created_at") or submit.get("created_at") or 0) / 1000
        # An answer from the mirror (a job Redis forgot) may carry no end time: the client's reading stands in.
        ended = ((end.get("ended_at") or end["t"] * 1000) / 1000) if end else None
        lives.append((job_id, created, ended, end))
    table = []
    # A job that never ended is counted with the first fault it was in flight for, not with every later one.
    unended_seen: set[str] = set()
    for fault in faults:
        start = fault["start"]
        label = f"{fault['kind']} {fault['target']}"
        entry: dict[str, Any] = {"at": start - load_start, "label": label, "hold": fault["hold_s"], "in_flight": 0}
        if fault.get("skipped"):
            entry["notes"] = "skipped: " + fault["skipped"]
            table.append(entry)
            continue
        if fault.get("ready") and fault.get("restarted"):
            entry["back"] = fault["ready"] - fault["restarted"]
        in_flight = [
            (job, ended) for job, created, ended, _ in lives
            if created <= start and (ended > start if ended is not None else job not in unended_seen)
        ]  # fmt: skip
        unended_seen.update(job for job, ended in in_flight if ended is None)
        entry["in_flight"] = len(in_flight)
        settled = [ended - start for _, ended in in_flight if ended is not None]
        if settled:
            entry["settled"] = max(settled)
        notes = []
        if len(settled) < len(in_flight):
            notes.append(f"{len(in_flight) - len(settled)} of them never ended")
        if fault["target"] == "leader":
            before = max((s.get("epoch") or 0 for s in samples if s["t"] < start), default=0)
            after = [s["t"] - start for s in samples if s["t"] >= start and (s.get("epoch") or 0) > before]
            entry["leader"] = after[0] if after else None
        if fault["target"].startswith("node:") and fault["kind"] == "stop":
            frozen = set((fault.get("nodes") or {}).values()) - {None}
            # By then the first attempt sent to a hung node has timed out: the scheduler has had its evidence.
            late = start + timings["JOB_TIMEOUT_S"]
            sent = sent_late = 0
            for _, _, _, view in lives:
                for attempt in view.get("attempts") or []:
                    at = (attempt.get("started_at") or 0) / 1000
                    if attempt.get("node_id") in frozen and start <= at <= fault["restarted"]:
                        sent += 1
                        sent_late += at > late
            notes.append(f"jobs sent to the frozen nodes: {sent} ({sent_late} more than a job timeout after it froze)")
        first_accept = min((s["t"] for s in submits.values() if s["t"] >= start), default=None)
        if first_accept is not None and first_accept - start > 1.0:
            notes.append(f"first job accepted after {first_accept - start:.1f} s")
        if fault.get("error"):
            notes.append("error: " + fault["error"])
        entry["notes"] = "; ".join(notes)
        table.append(entry)
    return table


def audit_stall(samples: list[dict[str, Any]], load_start: float) -> str:
    """The longest stretch of samples in which the audit backlog only grew, and the largest backlog seen."""
    longest = (0.0, 0.0)
    begun: float | None = None
    previous = 0
    for sample in samples:
        backlog = sample.get("audit_backlog")
        if backlog is None:
            continue
        if backlog > previous and backlog > 0:
            begun = sample["t"] if begun is None else begun
            if sample["t"] - begun > longest[1] - longest[0]:
                longest = (begun, sample["t"])
        elif backlog < previous or backlog == 0:
            begun = None
        previous = backlog
    peak = max((s.get("audit_backlog") or 0 for s in samples), default=0)
    if longest[1] == longest[0]:
        return f"peak backlog {peak}"
    return f"peak backlog {peak}; longest growth {longest[1] - longest[0]:.1f} s from t={longest[0] - load_start:.1f} s"


def observe(
    client: Events, nodes: Events, final: dict[str, Any], submits: dict[str, Any], ends: dict[str, Events],
    samples: Events, load_start: float,
) -> list[tuple[str, str]]:
    statuses = Counter(
        f"{e['call']} {e['status'] or e.get('error')}{' ' + e['code'] if e.get('code') else ''}" for e in client if e["ev"] == "http"
    )
    answered = [ends[job][0] for job in submits if ends.get(job)]
    no_attempt = [end["job"] for end in answered if end["state"] == "FAILED" and not end.get("attempts")]
    reasons = Counter(end["reason"] for end in answered if end["state"] != "DONE")
    later = Counter(
        "HTTP 404" if final["api"].get(job, {}).get("http") == 404 else "still answered"
        for job in submits if ends.get(job)
    )  # fmt: skip
    peak: dict[str, int] = {}
    for event in nodes:
        if event["ev"] == "assign":
            peak[event["proc"]] = max(peak.get(event["proc"], 0), event.get("active") or 0)
    return [
        ("submissions never accepted", str(sum(1 for e in client if e["ev"] == "not_accepted"))),
        ("HTTP errors and transport errors seen by the client", ", ".join(f"{k} x{n}" for k, n in statuses.most_common()) or "none"),
        ("404 answers for accepted jobs while followed", str(sum(1 for e in client if e["ev"] == "not_found"))),
        ("ended jobs as GET answers them after the run", ", ".join(f"{k} {n}" for k, n in later.most_common()) or "none"),
        ("failed jobs by reason", ", ".join(f"{k} {n}" for k, n in reasons.most_common()) or "none"),
        ("jobs failed without any attempt", f"{len(no_attempt)}" + (f" (e.g. {no_attempt[0]})" if no_attempt else "")),
        ("duplicate job_ids refused by nodes", str(sum(1 for e in nodes if e["ev"] == "assign" and e.get("seen_before")))),
        ("peak jobs in flight per node (node side)", ", ".join(f"{p} {n}" for p, n in sorted(peak.items())) or "none"),
        ("audit writer (sampled)", audit_stall(list(samples), load_start)),
        ("wait for rest / for the audit writer", f"{final['rest_wait_s']} s / {final['audit_wait_s']} s"),
    ]
