"""I7, the session clients' invariant: every utterance sent gets exactly one final frame (a result or a
documented missing_result) within its bound; one whose socket a fault closed is reported, not passed
silently; anything else breaks it. Histories built in code, shaped like `chaos/sessions.py` writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.checker import check, deadline_bound_s
from tests.chaos.test_checker_flags_every_broken_invariant import T0, TIMINGS, Run, broken

SESSION = "s-00000001"


def web_kill(start: float) -> dict[str, Any]:
    return {"t": start + 3, "ev": "fault", "kind": "kill", "target": "web-1", "start": start, "hold_s": 3,
            "end": start + 3, "url": "http://127.0.0.1:8001"}  # fmt: skip


def utterance(index: int, at: float) -> dict[str, Any]:
    return {"t": at, "ev": "s_utt", "session": SESSION, "i": index, "seq": 4 * (index + 1)}


def final(index: int, at: float, kind: str = "translation_result", reason: str = "") -> dict[str, Any]:
    return {"t": at, "ev": "s_frame", "session": SESSION, "kind": kind, "i": index, "reason": reason, "job": f"job-s{index}"}


def test_a_clean_session_history_holds_i7(tmp_path: Path) -> None:
    run = Run()
    run.sessions += [utterance(1, T0 + 3), final(1, T0 + 4, "missing_result", "NO_AVAILABLE_NODE")]

    report = check(run.write(tmp_path))

    assert report.ok
    assert {row.name: row.checked for row in report.rows}["I7"] == 2


def test_an_utterance_without_a_final_frame_on_an_open_socket_breaks_i7(tmp_path: Path) -> None:
    run = Run()
    run.sessions.append(utterance(1, T0 + 3))

    assert broken(check(run.write(tmp_path))) == {"I7": ["no final frame, socket still open (silently dropped)"]}


def test_an_utterance_whose_socket_a_web_kill_closed_is_reported_and_a_close_without_fault_breaks_i7(tmp_path: Path) -> None:
    (tmp_path / "fault").mkdir()
    (tmp_path / "no-fault").mkdir()
    lost = {"t": T0 + 5.1, "ev": "s_lost", "session": SESSION, "server": "ws://127.0.0.1:8001", "code": None, "owed": [1]}
    with_fault = Run()
    with_fault.sessions += [utterance(1, T0 + 3), lost]
    with_fault.history.append(web_kill(T0 + 5))
    without = Run()
    without.sessions += [utterance(1, T0 + 3), lost]

    report = check(with_fault.write(tmp_path / "fault"))
    assert report.ok
    i7 = {row.name: row for row in report.rows}["I7"]
    assert list(i7.documented) == ["socket closed by a fault before the result"]
    assert "not counted, reported: socket closed by a fault before the result" in report.format()
    assert broken(check(without.write(tmp_path / "no-fault"))) == {"I7": ["socket closed with no fault on its web process"]}


@pytest.mark.parametrize(("frames", "expected"), [
    ([final(0, T0 + 1.5, "missing_result", "JOB_TIMEOUT")], "more than one final frame"),
    ([final(1, T0 + 2)], "final frame for an utterance never sent"),
])  # fmt: skip
def test_a_second_final_frame_or_one_for_an_utterance_never_sent_breaks_i7(
    tmp_path: Path, frames: list[dict[str, Any]], expected: str
) -> None:
    run = Run()
    run.sessions += frames

    assert broken(check(run.write(tmp_path))) == {"I7": [expected]}


@pytest.mark.parametrize("reason", ["INTERNAL_ERROR", "SOMETHING_NEW"])
def test_a_missing_result_with_an_undocumented_reason_breaks_i7(tmp_path: Path, reason: str) -> None:
    run = Run()
    run.sessions[-1] = final(0, T0 + 1, "missing_result", reason)

    assert broken(check(run.write(tmp_path))) == {"I7": ["missing_result with an undocumented reason"]}


def test_an_internal_error_frame_breaks_i7(tmp_path: Path) -> None:
    run = Run()
    run.sessions.append({"t": T0 + 2, "ev": "s_frame", "session": SESSION, "kind": "error", "i": None, "reason": "INTERNAL_ERROR", "job": None})

    assert broken(check(run.write(tmp_path))) == {"I7": ["INTERNAL_ERROR frame"]}


def test_a_final_frame_after_the_bound_breaks_i7(tmp_path: Path) -> None:
    run = Run()
    run.sessions[-1] = final(0, T0 + 0.5 + deadline_bound_s(TIMINGS) + 1)

    assert broken(check(run.write(tmp_path))) == {"I7": ["final frame after its bound"]}
