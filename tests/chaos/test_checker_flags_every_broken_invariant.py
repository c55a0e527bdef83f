"""The chaos checker judges a run from its files; each invariant fails when its history says it broke, and a
clean history passes. The histories are built in code, shaped like the ones `make chaos` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaos.checker import check, deadline_bound_s

TIMINGS = {
    "JOB_PENDING_TIMEOUT_S": 5.0, "JOB_TIMEOUT_S": 6.0, "JOB_ACK_TIMEOUT_S": 3.0, "JOB_MAX_ATTEMPTS": 3.0,
    "JOB_SWEEP_INTERVAL_S": 0.25, "NODE_HEARTBEAT_INTERVAL_S": 2.0, "NODE_HEARTBEAT_TIMEOUT_S": 9.0,
    "POOL_LEASE_TTL_S": 3.0, "POOL_LEASE_RENEW_S": 0.5,
}  # fmt: skip
T0 = 1_800_000_000.0


class Run:
    """A minimal clean run: one job, done on its first attempt, everything at rest afterwards."""

    def __init__(self) -> None:
        attempt = {"attempt_id": 1, "node_id": "node-A", "state": "DONE", "reason": "", "started_at": 1, "ended_at": 2}
        self.client: list[dict[str, Any]] = [
            {"t": T0, "ev": "submit", "job": "job-1", "created_at": T0 * 1000, "t_first": T0},
            {"t": T0 + 1, "ev": "end", "job": "job-1", "state": "DONE", "reason": "", "created_at": T0 * 1000,
             "ended_at": (T0 + 1) * 1000, "attempts": [attempt]},
        ]  # fmt: skip
        self.nodes: list[dict[str, Any]] = [
            {"t": T0, "ev": "assign", "proc": "fast-1", "node": "node-A", "job": "job-1", "attempt": 1, "seen_before": False, "active": 1},
        ]
        self.history: list[dict[str, Any]] = [
            {"t": T0 + 0.5, "ev": "sample", "now_ms": 0, "nodes": {"node-A": [4, 0, 1, "ready"]}, "epoch": 3, "lease": "w@h/i|3", "config_epoch": 3},
        ]
        self.final: dict[str, Any] = {
            "rest_wait_s": 0.0,
            "audit_wait_s": 0.0,
            "redis": {"now_ms": 0, "nodes": {"node-A": {"live": [], "expired": 0, "status": "ready"}}, "pending": 0,
                      "deadlines": [], "live_jobs": [], "audit_backlog": 0, "audit_dead": 0},
            "api": {"job-1": {"http": 200, "job_id": "job-1", "state": "DONE", "attempts": [attempt]}},
            "database": {"jobs": {"job-1": {"state": "DONE", "reason": "", "ended_at": T0 + 1,
                                            "attempts": {"1": {"state": "DONE", "reason": "", "node_id": "node-A"}}}},
                         "epoch_floor": 3},
        }  # fmt: skip

        # One session on web 1: utterance 0 sent, its translation_result back.
        self.sessions: list[dict[str, Any]] = [
            {"t": T0, "ev": "s_open", "client": 0, "session": "s-00000001", "server": "ws://127.0.0.1:8001"},
            {"t": T0 + 0.5, "ev": "s_utt", "session": "s-00000001", "i": 0, "seq": 4},
            {"t": T0 + 1.0, "ev": "s_frame", "session": "s-00000001", "kind": "translation_result", "i": 0, "reason": "", "job": "job-s0"},
        ]  # fmt: skip

    def write(self, folder: Path) -> Path:
        (folder / "timings.json").write_text(json.dumps(TIMINGS))
        for name, events in (("client", self.client), ("nodes", self.nodes), ("history", self.history), ("sessions", self.sessions)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
        (folder / "final.json").write_text(json.dumps(self.final))
        return folder


def broken(report) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return {row.name: list(row.details) for row in report.rows if not row.ok}


def test_a_clean_history_holds_every_invariant(tmp_path: Path) -> None:
    report = check(Run().write(tmp_path))

    assert report.ok
    assert [row.checked > 0 for row in report.rows] == [True] * 7


def test_a_job_whose_end_never_reached_the_client_breaks_i1(tmp_path: Path) -> None:
    run = Run()
    run.client = run.client[:1]
    run.final["api"]["job-1"] = {"http": 404}

    assert broken(check(run.write(tmp_path))) == {"I1": ["no terminal answer reached the client"]}


def test_a_job_that_ended_after_its_bound_breaks_i1(tmp_path: Path) -> None:
    run = Run()
    run.client[1]["ended_at"] = (T0 + deadline_bound_s(TIMINGS) + 1) * 1000

    assert broken(check(run.write(tmp_path))) == {"I1": ["ended after its bound"]}


def test_an_end_the_api_has_forgotten_breaks_i1(tmp_path: Path) -> None:
    run = Run()
    run.final["api"]["job-1"] = {"http": 404}

    assert broken(check(run.write(tmp_path))) == {"I1": ["end no longer answered (HTTP 404 afterwards)"]}


@pytest.mark.parametrize("second", [
    {"proc": "fast-2", "node": "node-B", "seen_before": False},
    {"proc": "fast-1", "node": "node-A", "seen_before": True},
])  # fmt: skip
def test_an_attempt_that_reached_a_node_twice_breaks_i2(tmp_path: Path, second: dict[str, Any]) -> None:
    run = Run()
    run.nodes.append({**run.nodes[0], **second, "t": T0 + 0.1})

    assert "I2" in broken(check(run.write(tmp_path)))


def test_a_node_sampled_over_its_capacity_breaks_i3(tmp_path: Path) -> None:
    run = Run()
    run.history.append({**run.history[0], "t": T0 + 1, "nodes": {"node-A": [2, 1, 2, "ready"]}})

    assert broken(check(run.write(tmp_path))) == {"I3": ["node over capacity"]}


def test_a_slot_held_at_rest_breaks_i4(tmp_path: Path) -> None:
    run = Run()
    run.final["redis"]["nodes"]["node-A"]["live"] = ["job-9#1"]

    assert broken(check(run.write(tmp_path))) == {"I4": ["slot still held"]}


def test_an_epoch_that_goes_back_breaks_i5(tmp_path: Path) -> None:
    run = Run()
    run.history.append({**run.history[0], "t": T0 + 1, "epoch": 2, "lease": "w@h/i|2", "config_epoch": 3})

    assert broken(check(run.write(tmp_path))) == {"I5": ["counter epoch went back", "lease epoch went back"]}


def test_a_database_row_left_live_after_the_end_breaks_i6(tmp_path: Path) -> None:
    run = Run()
    run.final["database"]["jobs"]["job-1"]["state"] = "SELECTING"

    assert broken(check(run.write(tmp_path))) == {"I6": ["state differs"]}


def _lost_at_wipe(run: Run, accepted_before_wipe_s: float) -> Run:
    """job-1 answered, then forgotten by a Redis wipe with no database row."""
    run.final["api"]["job-1"] = {"http": 404}
    run.final["database"]["jobs"] = {}
    wipe = T0 + accepted_before_wipe_s
    run.history.append({"t": wipe + 2, "ev": "fault", "kind": "wipe", "target": "redis", "start": wipe, "hold_s": 2, "end": wipe + 2})
    return run


def test_a_job_lost_with_a_wipe_within_the_audit_interval_is_the_documented_cost_not_a_violation(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "no-setting").mkdir()
    timings = {**TIMINGS, "AUDIT_INTERVAL_S": 0.5}
    inside = _lost_at_wipe(Run(), 0.3).write(tmp_path / "inside")
    outside = _lost_at_wipe(Run(), 0.8).write(tmp_path / "outside")
    for folder in (inside, outside):
        (folder / "timings.json").write_text(json.dumps(timings))
    # A run whose settings do not say the interval classifies nothing.
    unknown = _lost_at_wipe(Run(), 0.3).write(tmp_path / "no-setting")

    report = check(inside)
    assert report.ok
    rows = {row.name: row for row in report.rows}
    assert list(rows["I1"].documented) == ["accepted within the audit interval before a wipe, end forgotten"]
    assert list(rows["I6"].documented) == ["accepted within the audit interval before a wipe, no row"]
    assert "not counted, documented cost of a Redis wipe" in report.format()
    assert broken(check(outside)) == {
        "I1": ["end no longer answered (HTTP 404 afterwards)"], "I6": ["job missing from the database"]
    }
    assert broken(check(unknown)) == broken(check(outside))


def _settled_lost_after_wipe(run: Run, ended_before_wipe_s: float, state: str = "FAILED", reason: str = "STATE_LOST") -> Run:
    """job-1 answered DONE at T0 + 1; a wipe later, the API and its database row say `state` `reason`."""
    run.final["api"]["job-1"].update(state=state, error={"code": reason})
    run.final["database"]["jobs"]["job-1"].update(state=state, reason=reason)
    wipe = T0 + 1 + ended_before_wipe_s
    run.history.append({"t": wipe + 2, "ev": "fault", "kind": "wipe", "target": "redis", "start": wipe, "hold_s": 2, "end": wipe + 2})
    return run


@pytest.mark.parametrize("case", ["inside", "outside", "not-state-lost", "no-setting"])
def test_an_end_answered_within_the_audit_interval_before_a_wipe_and_settled_lost_is_documented_only_there(
    tmp_path: Path, case: str
) -> None:
    run = {
        "inside": lambda: _settled_lost_after_wipe(Run(), 0.3),
        "outside": lambda: _settled_lost_after_wipe(Run(), 0.8),
        "not-state-lost": lambda: _settled_lost_after_wipe(Run(), 0.3, reason="JOB_TIMEOUT"),
        "no-setting": lambda: _settled_lost_after_wipe(Run(), 0.3),
    }[case]()
    folder = run.write(tmp_path)
    if case != "no-setting":
        (folder / "timings.json").write_text(json.dumps({**TIMINGS, "AUDIT_INTERVAL_S": 0.5}))

    report = check(folder)

    if case == "inside":
        assert report.ok
        rows = {row.name: row for row in report.rows}
        assert list(rows["I1"].documented) == ["ended within the audit interval before a wipe, later settled STATE_LOST"]
        assert list(rows["I6"].documented) == ["ended within the audit interval before a wipe, row settled STATE_LOST"]
    else:
        # Ended earlier than one audit interval before the wipe (its end should have been in the database), or
        # changed into anything but STATE_LOST: the end really changed.
        assert broken(report) == {"I1": ["end changed afterwards"], "I6": ["state differs"]}
