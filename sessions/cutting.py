"""Utterance cutting on the streaming path: when the audio a session streams becomes one job.

Pure and clock-injected; the session socket (sessions/session.py) feeds it chunks and fires its pause timer.
The rules are the old server's (docs/sessions.md): cut on `is_final`, after a pause without chunks, at a
maximum audio length, at a maximum buffer size, and on `session_close`. Its bugs are not copied: no idle
trap, and a cut never depends on the previous job having been created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from sessions import audio


class CutReason(StrEnum):
    IS_FINAL = "is_final"
    PAUSE = "pause"
    MAX_DURATION = "max_duration"
    MAX_LENGTH = "max_length"
    SESSION_CLOSE = "session_close"


@dataclass(frozen=True)
class CutRules:
    pause_ms: int = 3000
    max_duration_ms: int = 10_000
    max_bytes: int = 500 * 1024
    padding_final_ms: int = 280
    padding_timeout_ms: int = 220

    @classmethod
    def from_settings(cls) -> CutRules:
        return cls(
            pause_ms=settings.SESSIONS_PAUSE_MS,
            max_duration_ms=settings.SESSIONS_MAX_DURATION_MS,
            max_bytes=settings.SESSIONS_MAX_UTTERANCE_BYTES,
            padding_final_ms=settings.SESSIONS_PADDING_FINAL_MS,
            padding_timeout_ms=settings.SESSIONS_PADDING_TIMEOUT_MS,
        )

    def padding_ms(self, reason: CutReason) -> int:
        # The node pads the end of the audio by this much (a hint; the old server's values per reason).
        if reason == CutReason.IS_FINAL:
            return self.padding_final_ms
        if reason == CutReason.MAX_LENGTH:
            return 0
        return self.padding_timeout_ms


@dataclass(frozen=True)
class Cut:
    index: int
    audio: bytes
    reason: CutReason
    padding_ms: int
    duration_ms: int


class Cutter:
    """One session's streaming buffer. Indices rise from 0 and advance on every cut of a non-empty buffer,
    whatever then happens to the job (a failed job is reported for its index, never retried under it)."""

    def __init__(self, rules: CutRules, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.clock = clock
        self.buffer = bytearray()
        self.duration_ms = 0
        self.last_chunk_at: float | None = None
        self.next_index = 0

    def add(self, payload: bytes, is_final: bool) -> Cut | None:
        """Take one chunk; the cut it causes, if any."""
        now = self.clock()
        # A chunk after a pause the timer did not fire for (a busy loop) still ends the old utterance, and
        # joins it, as the old server did: the client sent it as the tail of what it was saying.
        gap = bool(self.buffer) and self.last_chunk_at is not None and (now - self.last_chunk_at) * 1000 > self.rules.pause_ms
        self.last_chunk_at = now
        if payload:
            self.buffer += payload
            self.duration_ms += audio.duration_ms(payload)
        if gap:
            return self._cut(CutReason.PAUSE)
        if is_final:
            return self._cut(CutReason.IS_FINAL)
        if len(self.buffer) > self.rules.max_bytes:
            return self._cut(CutReason.MAX_LENGTH)
        if self.duration_ms >= self.rules.max_duration_ms:
            return self._cut(CutReason.MAX_DURATION)
        return None

    def pause_deadline(self) -> float | None:
        """When the pause rule cuts the buffer if no chunk comes (clock time), or None with nothing buffered."""
        if not self.buffer or self.last_chunk_at is None:
            return None
        return self.last_chunk_at + self.rules.pause_ms / 1000

    def on_pause_timer(self) -> Cut | None:
        deadline = self.pause_deadline()
        if deadline is None or self.clock() < deadline:
            return None
        return self._cut(CutReason.PAUSE)

    def close(self) -> Cut | None:
        """`session_close`: what is buffered becomes the last utterance."""
        return self._cut(CutReason.SESSION_CLOSE)

    def discard(self) -> None:
        self.buffer = bytearray()
        self.duration_ms = 0

    def index_used(self, index: int) -> None:
        """A one-shot `utterance` took `index`: streaming continues above it, so indices stay unique."""
        self.next_index = max(self.next_index, index + 1)

    def _cut(self, reason: CutReason) -> Cut | None:
        if not self.buffer:
            return None
        cut = Cut(self.next_index, bytes(self.buffer), reason, self.rules.padding_ms(reason), self.duration_ms)
        self.next_index += 1
        self.discard()
        return cut
