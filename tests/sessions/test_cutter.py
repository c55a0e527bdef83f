"""The cutting rules on their own, with an injected clock (the socket tests show them on a real server)."""

from __future__ import annotations

from sessions.audio import duration_ms, plan_a, plan_a_packets
from sessions.cutting import CutReason, CutRules, Cutter

CHUNK = plan_a([b"\x41" * 60] * 13)  # 260 ms of Plan A, as the web client sends


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cutter(**rules: int) -> tuple[Cutter, Clock]:
    clock = Clock()
    return Cutter(CutRules(**rules), clock), clock


def test_a_plan_a_chunk_is_measured_by_its_packets_of_20_ms():
    assert plan_a_packets(CHUNK) == 13
    assert duration_ms(CHUNK) == 260


def test_audio_that_is_not_plan_a_is_measured_with_the_old_byte_estimate():
    assert plan_a_packets(b"\xff\xff\x00") is None
    assert duration_ms(b"\x00" * 600) == 200


def test_is_final_cuts_with_the_old_padding_and_indices_rise():
    c, _ = cutter()
    assert c.add(CHUNK, False) is None
    first = c.add(b"", True)
    assert (first.index, first.reason, first.padding_ms, first.audio) == (0, CutReason.IS_FINAL, 280, CHUNK)
    c.add(CHUNK, False)
    assert c.add(b"", True).index == 1


def test_the_pause_timer_cuts_three_seconds_after_the_last_chunk():
    c, clock = cutter()
    c.add(CHUNK, False)
    assert c.pause_deadline() == 103.0
    clock.now = 102.9
    assert c.on_pause_timer() is None
    clock.now = 103.0
    cut = c.on_pause_timer()
    assert (cut.index, cut.reason, cut.padding_ms) == (0, CutReason.PAUSE, 220)
    assert c.pause_deadline() is None, "nothing buffered: no timer"


def test_a_chunk_after_a_pause_the_timer_missed_joins_the_old_utterance_and_cuts_it():
    c, clock = cutter()
    c.add(CHUNK, False)
    clock.now += 3.5
    cut = c.add(CHUNK, False)
    assert (cut.reason, cut.audio) == (CutReason.PAUSE, CHUNK + CHUNK)


def test_ten_seconds_of_audio_cut_the_utterance():
    c, _ = cutter()
    cuts = [c.add(CHUNK, False) for _ in range(38)]
    assert [x for x in cuts if x] == [], "38 chunks are 9.88 s"
    cut = c.add(CHUNK, False)
    assert (cut.reason, cut.duration_ms, cut.padding_ms) == (CutReason.MAX_DURATION, 10_140, 220)


def test_a_buffer_above_the_size_limit_is_cut_without_padding():
    c, _ = cutter(max_bytes=2000)
    assert c.add(CHUNK, False) is None and c.add(CHUNK, False) is None
    cut = c.add(CHUNK, False)
    assert (cut.reason, cut.padding_ms, len(cut.audio)) == (CutReason.MAX_LENGTH, 0, 3 * len(CHUNK))


def test_session_close_cuts_what_is_buffered_and_nothing_when_empty():
    c, _ = cutter()
    assert c.close() is None
    c.add(CHUNK, False)
    cut = c.close()
    assert (cut.reason, cut.padding_ms) == (CutReason.SESSION_CLOSE, 220)


def test_there_is_no_idle_trap_audio_after_minutes_of_silence_is_still_cut():
    c, clock = cutter()
    c.add(CHUNK, False)
    c.add(b"", True)
    clock.now += 600
    c.add(CHUNK, False)
    assert c.add(b"", True).index == 1


def test_streaming_indices_continue_above_a_one_shot_index():
    c, _ = cutter()
    c.index_used(4)
    c.add(CHUNK, False)
    assert c.add(b"", True).index == 5
