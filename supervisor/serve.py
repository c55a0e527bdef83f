"""`python -m supervisor.serve <daphne arguments>`: daphne, with oversize frames answered by a close frame and its
own access log silenced (see `supervisor.webserver` for how either server is started).

Daphne's WebSocket factory keeps autobahn's default `failByDrop`, so a frame above
`--websocket-max-message-size` drops the TCP connection and the node sees an abnormal closure (1006)
instead of PROTOCOL's 1009. Turning `failByDrop` off makes autobahn send the 1009 close frame first.

Daphne writes its access log as plain text on stdout, beside the JSON lines of everything else, and uvicorn's
includes query strings, which can carry a node token (the real node sends `?token=`). Neither is used: the
application writes its own access lines under both servers (`core.access_log`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import daphne.cli
import daphne.server
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 (autobahn's name)
        kwargs.setdefault("failByDrop", False)
        super().setProtocolOptions(*args, **kwargs)


class SilentAccessLog(AccessLogGenerator):
    def write_entry(  # type: ignore[override]
        self, host: str, date: datetime, request: str, status: int | None = None, length: int | None = None, **_: Any
    ) -> None:
        pass


def main() -> None:
    daphne.server.WebSocketFactory = ClosingWebSocketFactory  # type: ignore[misc]
    daphne.cli.AccessLogGenerator = SilentAccessLog  # type: ignore[misc]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
