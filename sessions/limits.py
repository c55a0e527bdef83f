"""Who may open a session from where, and how much audio it may send."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Browsers always send Origin on a WebSocket upgrade; other clients (the mobile app, the API gateway)
    send none and are judged by their key alone. A browser page must be on the list (or the list `*`), so a
    key in the web client's URL cannot be used from any other web page."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    return any(entry == "*" or entry.rstrip("/").lower() == origin for entry in allowed)


class AudioBudget:
    """A token bucket of audio bytes: `rate` per second, holding at most `burst` (one whole utterance, so a
    one-shot client can always send one at once)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.updated = clock()

    def take(self, size: int) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if size > self.tokens:
            return False
        self.tokens -= size
        return True

    def retry_after_ms(self, size: int) -> int:
        return max(0, int((size - self.tokens) / self.rate * 1000) + 1)
