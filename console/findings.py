"""What a `manage.py doctor` check returns (`Finding`, built with `passed`/`warned`/`failed`/`skipped`) and
the small helpers the checks share: Redis addresses and time, units, and a call bounded by a timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import redis

Status = Literal["OK", "WARN", "FAIL", "SKIPPED"]


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # Not ok, but the deployment works: reported with its fix, does not make the run fail.
    warning: bool = False
    # Not run because something it needs is down (already reported as a failure of its own).
    skipped: bool = False

    @property
    def status(self) -> Status:
        if self.skipped:
            return "SKIPPED"
        if self.ok:
            return "OK"
        return "WARN" if self.warning else "FAIL"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


def passed(name: str, detail: str) -> Finding:
    return Finding(name, True, detail)


def warned(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, False, detail, fix, warning=True)


def failed(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, False, detail, fix)


def skipped(name: str, detail: str) -> Finding:
    return Finding(name, False, detail, skipped=True)


# --- small helpers --------------------------------------------------------------------------------------------


def address(url: str) -> str:
    """Host and port (or socket path) of a Redis URL: never the password a URL may carry."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def same_server(url_a: str, url_b: str) -> bool:
    return address(url_a) == address(url_b)


def redis_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def stream_id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def megabytes(value: int) -> str:
    return f"{value / 1_048_576:.1f} MB"


def seconds(value: float) -> str:
    return f"{value:.1f} s" if abs(value) < 120 else f"{value / 60:.0f} min"


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run `fn` in a daemon thread and wait at most `timeout`: a hung server (SIGSTOPped, a black-holed
    route) must not hold the doctor for the client's own, possibly much longer, socket timeout. A daemon
    thread, because a thread still blocked in a socket read must not keep the process from exiting."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="doctor-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
