"""The project's one way to write a point in time, per interface (docs/time.md):

- screens (admin, live page, command output): UTC, `2026-11-29 08:34:44 UTC`, to the second; latencies and
  job step times to the millisecond (`08:34:44.123`, `+12 ms`);
- JSON (REST API, run file, logs): ISO 8601 in UTC with milliseconds, `2026-11-29T08:34:44.123Z`; durations
  are numbers named with their unit (`duration_ms`).

Redis and the Lua scripts keep epoch milliseconds internally; they are converted here, at the edge.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def from_epoch_ms(value: float | int | str | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value) / 1000, UTC)  # type: ignore[arg-type]


def iso(at: datetime | None) -> str | None:
    """JSON form: `2026-11-29T08:34:44.123Z` (always UTC, always milliseconds)."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time(at: datetime | None, ms: bool = False) -> str:
    """Screen form: `2026-11-29 08:34:44 UTC`, with `.123` when `ms`."""
    if at is None:
        return "-"
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    if ms:
        text += f".{at.microsecond // 1000:03d}"
    return f"{text} UTC"


def format_duration(delta: timedelta | float | None) -> str:
    """A latency for people: `850 ms`, `3.25 s`, `2 min 5 s`."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s"
