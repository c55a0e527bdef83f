"""`python -m scheduler.serve <daphne arguments>`: daphne, with oversize frames answered by a close frame.

Daphne's WebSocket factory keeps autobahn's default `failByDrop`, so a frame above
`--websocket-max-message-size` drops the TCP connection and the node sees an abnormal closure (1006)
instead of PROTOCOL's 1009. Turning `failByDrop` off makes autobahn send the 1009 close frame first.
"""

from __future__ import annotations

from typing import Any

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory


class ClosingWebSocketFactory(WebSocketFactory):
    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 (autobahn's name)
        kwargs.setdefault("failByDrop", False)
        super().setProtocolOptions(*args, **kwargs)


def main() -> None:
    daphne.server.WebSocketFactory = ClosingWebSocketFactory  # type: ignore[misc]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
