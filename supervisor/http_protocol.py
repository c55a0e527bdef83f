"""uvicorn's HTTP protocol with a deadline for the request head: `--http supervisor.http_protocol:HeadTimeoutProtocol`.

uvicorn times out only an idle keep-alive connection *after* a response (`--timeout-keep-alive`), and cancels
even that timer on the first byte of a next request. A connection that never sends a byte, or sends its
headers a byte at a time, holds a file descriptor for good: 2,000 such connections took a web process from
41 to over 4,000 descriptors. Here a connection must complete its request head within WEB_HEADER_TIMEOUT_S
of connecting (or of its previous answer), or it is closed. A WebSocket handshake is a request head too, so
this also covers node sockets that never finish their upgrade; after the upgrade the node consumer's own
timeouts apply (nodes/consumers.py).

daphne has no equivalent (docs/security.md says what to put in front of it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# One summary line per interval instead of one per connection: a flood of silent connections must not
# become a flood of log lines.
_LOG_EVERY_S = 10.0
_unlogged = 0
_logged_at = 0.0


def _settings() -> tuple[float, float]:
    # Read at first use: uvicorn imports this class before the application (and so before Django's settings).
    from django.conf import settings

    return settings.WEB_HEADER_TIMEOUT_S, settings.WEB_KEEPALIVE_TIMEOUT_S


class HeadTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout, self.timeout_keep_alive = _settings()
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request's head is already complete; only an empty pipeline waits for a new one.
        if not self.pipeline and not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        from core import metrics

        metrics.WEB_CONNECTIONS_TIMED_OUT.inc()
        _note_timeout(self.head_timeout)
        self.transport.close()


def _note_timeout(timeout: float) -> None:
    global _unlogged, _logged_at
    _unlogged += 1
    now = time.monotonic()
    if now - _logged_at >= _LOG_EVERY_S:
        log.warning(
            "closed connections that sent no complete request head in time",
            extra={"event": "web_head_timeout", "reason": f"{_unlogged} connection(s), {timeout} s each"},
        )
        _unlogged, _logged_at = 0, now
