"""`python -m scheduler.serve <daphne arguments>`: daphne, with oversize frames answered by a close frame and
its access log sent through logging.

Daphne's WebSocket factory keeps autobahn's default `failByDrop`, so a frame above
`--websocket-max-message-size` drops the TCP connection and the node sees an abnormal closure (1006)
instead of PROTOCOL's 1009. Turning `failByDrop` off makes autobahn send the 1009 close frame first.

Daphne writes its access log as plain text on stdout, beside the JSON lines of everything else. Here each
entry goes to the `scheduler.access` logger instead (JSON like the rest, off unless ACCESS_LOG=true), and only
with the path: a query string can carry a node token (the real node sends `?token=`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import daphne.cli
import daphne.server
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory

access_log = logging.getLogger("scheduler.access")


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 (autobahn's name)
        kwargs.setdefault("failByDrop", False)
        super().setProtocolOptions(*args, **kwargs)


class LoggingAccessLog(AccessLogGenerator):
    def write_entry(  # type: ignore[override]
        self, host: str, date: datetime, request: str, status: int | None = None, length: int | None = None, **_: Any
    ) -> None:
        # daphne's `path` never includes the query string; the request line is "<METHOD> <path>".
        access_log.info(
            "%s %s %s", host, request, status or "-", extra={"event": "access", "code": status, "conn": host}
        )


def main() -> None:
    daphne.server.WebSocketFactory = ClosingWebSocketFactory  # type: ignore[misc]
    daphne.cli.AccessLogGenerator = LoggingAccessLog  # type: ignore[misc]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
