"""I7, the sessions' invariant, judged from `sessions.jsonl` (written by `chaos/sessions.py`) and the fault log:
every utterance a session sent (an `is_final` after audio, which the stack cuts at once) gets exactly one
final frame, `translation_result` or a `missing_result` with a documented reason (docs/sessions.md), within
the job deadline bound; an utterance whose socket was closed under it by a fault (its web process killed)
before its result is reported apart, by name, never silently passed. A socket closed with no fault on its
web process, a second final frame, a frame for an utterance never sent, an `INTERNAL_ERROR` or a
`missing_result` reason docs/sessions.md does not list are violations.

Pure, like chaos/checker.py: files in, a Row out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

FINALS = ("translation_result", "missing_result")
# docs/sessions.md ("Results", "Faults"): the job's failure reasons (jobs.models.FailureReason), the node's
# write-offs, an empty result, and the refusals of a submission.
DOCUMENTED_MISSING = frozenset({
    "NO_AVAILABLE_NODE", "POOL_EMPTY", "RESERVE_FAILED", "DISPATCH_FAILED", "ACK_TIMEOUT", "JOB_TIMEOUT",
    "NODE_OFFLINE", "NODE_ERROR", "MODEL_NOT_AVAILABLE", "CANCELLED", "DEPENDENCY_DOWN", "STATE_LOST",
    "silence_detected", "NO_TEXT_ASSIGNED", "ASR_EMPTY", "UTTERANCE_INDEX_REUSED",
})  # fmt: skip
# A socket lost this long after its web process's fault ended still counts as closed by it (the client
# notices a dead peer when it next reads or writes).
LOSS_SLACK_S = 2.0

Events = list[dict[str, Any]]


def _address(url: str) -> str:
    return url.split("//", 1)[-1].rstrip("/")


def closing_fault(loss: dict[str, Any], faults: Events) -> dict[str, Any] | None:
    """The kill of the web process the session's socket was on, around the time the socket was lost."""
    for fault in faults:
        if fault.get("skipped") or not fault["target"].startswith("web-") or fault["kind"] != "kill":
            continue
        if _address(str(fault.get("url") or "")) == _address(loss["server"]) and fault["start"] <= loss["t"] <= fault["end"] + LOSS_SLACK_S:
            return fault
    return None


def check_sessions(events: Events, faults: Events, bound: float, overlap: Any, row: Any) -> Any:
    """Fill `row` (a chaos.checker.Row) from the session history; `overlap(start, end)` is the extra time the
    faults overlapping that stretch allow."""
    sent = {(e["session"], e["i"]): e for e in events if e["ev"] == "s_utt"}
    finals: dict[tuple[str, Any], Events] = defaultdict(list)
    for event in events:
        if event["ev"] == "s_frame" and event["kind"] in FINALS:
            finals[(event["session"], event["i"])].append(event)
        elif event["ev"] == "s_frame" and event["kind"] == "error" and event.get("reason") == "INTERNAL_ERROR":
            row.fail("INTERNAL_ERROR frame", f"session {event['session']}")
    lost = {e["session"]: e for e in events if e["ev"] == "s_lost" and e.get("session")}
    for (session, index), utterance in sorted(sent.items(), key=lambda item: item[1]["t"]):
        row.checked += 1
        name = f"{session} #{index}"
        got = finals.get((session, index), [])
        if not got:
            loss = lost.get(session)
            if loss is None:
                row.fail("no final frame, socket still open (silently dropped)", name)
            elif (fault := closing_fault(loss, faults)) is not None:
                row.document("socket closed by a fault before the result", f"{name} ({fault['kind']} {fault['target']})")
            else:
                row.fail("socket closed with no fault on its web process", f"{name} (close code {loss.get('code')})")
            continue
        if len(got) > 1:
            row.fail("more than one final frame", f"{name}: {', '.join(f['kind'] + ' ' + f['reason'] for f in got)}")
        first = got[0]
        if first["kind"] == "missing_result" and first["reason"] not in DOCUMENTED_MISSING:
            row.fail("missing_result with an undocumented reason", f"{name} {first['reason']}")
        allowed = bound + overlap(utterance["t"], first["t"])
        if first["t"] - utterance["t"] > allowed:
            row.fail("final frame after its bound", f"{name} after {first['t'] - utterance['t']:.1f} s (bound {allowed:.1f} s)")
    for (session, index), frames in finals.items():
        if (session, index) not in sent:
            row.fail("final frame for an utterance never sent", f"{session} #{index} {frames[0]['kind']}")
    return row


def session_totals(events: Events) -> dict[str, Any]:
    kinds: dict[str, int] = defaultdict(int)
    for event in events:
        if event["ev"] == "s_frame" and event["kind"] in FINALS:
            kinds[event["kind"] if event["kind"] == "translation_result" else f"missing {event['reason']}"] += 1
    return {
        "sessions opened": sum(1 for e in events if e["ev"] == "s_open"),
        "utterances sent": sum(1 for e in events if e["ev"] == "s_utt"),
        "final frames": dict(sorted(kinds.items())),
    }


def session_observations(events: Events) -> list[tuple[str, str]]:
    refused: dict[str, int] = defaultdict(int)
    for event in events:
        if event["ev"] == "s_refused":
            refused[event["why"]] += 1
        elif event["ev"] == "s_frame" and event["kind"] == "error":
            refused[f"error {event['reason']}"] += 1
    losses = [e for e in events if e["ev"] == "s_lost" and e.get("session")]
    return [
        ("session sockets lost under the client", str(len(losses))),
        ("session refusals and error frames", ", ".join(f"{k} x{n}" for k, n in sorted(refused.items())) or "none"),
    ]
