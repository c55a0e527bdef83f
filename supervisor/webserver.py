"""How a web process is started under either ASGI server: one command line for `make run`, the tests and the
benchmark. Imports nothing of either server, so the `make run` supervisor can use it before anything starts.

uvicorn is the default (WEB_SERVER): serving the same application it handled more jobs per second, with less
CPU per job, than daphne in every benchmark run (docs/performance.md). daphne keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SERVERS = ("uvicorn", "daphne")
DEFAULT_SERVER = "uvicorn"
APPLICATION = "scheduler.asgi:application"
HTTP_PROTOCOL = "supervisor.http_protocol:HeadTimeoutProtocol"
# Keepalive at the transport: the server pings every node socket and closes one that does not answer in time,
# so a hung node (frozen process, dead host, broken route) goes offline and its jobs go elsewhere within
# interval + timeout, well before the 30 s job timeout and the 45 s heartbeat timeout. The real node's `ws`
# library answers pings by itself; an answering node never sees these. daphne takes whole seconds.
# Every socket is pinged: at 10,000 nodes on one instance that is interval/10,000 pings a second, and the
# scale benchmark's p99 at 10,000 nodes grew with them (docs/performance.md, "Keepalive"). 15 s + 10 s still
# finds a hung node within 25 s, before the 30 s job timeout.
PING_INTERVAL_S = 15
PING_TIMEOUT_S = 10
# On SIGTERM uvicorn waits for open connections and their tasks without a bound by default, daphne for 10 s
# (the supervisor's whole stop timeout): past this both cancel what is left and exit.
GRACEFUL_SHUTDOWN_S = 5


def server_command(server: str, host: str, port: int, max_message_bytes: int | None = None,
                   extra_args: Sequence[str] = (), app: str = APPLICATION, processes: int = 1,
                   ping_interval_s: int = PING_INTERVAL_S, ping_timeout_s: int = PING_TIMEOUT_S) -> list[str]:  # fmt: skip
    """The command line of the web server. `max_message_bytes` bounds a WebSocket message (a larger one is
    answered with close code 1009); None keeps the server's own limit. `processes` > 1 (uvicorn only) runs that
    many web processes on one port, each an instance of its own: node sockets spread over them and frames
    for a node on another process go through the channel layer, as between hosts."""
    size = [] if max_message_bytes is None else [str(max_message_bytes)]
    if processes > 1 and server != "uvicorn":
        raise ValueError("several web processes on one port need uvicorn")
    if server == "daphne":
        limits = ["--websocket-max-message-size", *size, "--websocket-max-frame-size", *size] if size else []
        ping = ["--ping-interval", str(ping_interval_s), "--ping-timeout", str(ping_timeout_s),
                "--application-close-timeout", str(GRACEFUL_SHUTDOWN_S)]
        return [sys.executable, "-m", "supervisor.serve", "-b", host, "-p", str(port), *limits, *ping, *extra_args, app]
    if server == "uvicorn":
        # Lifespan starts the background loop before the first request; no access log of uvicorn's own. No
        # permessage-deflate (daphne does not offer it either): base64 audio hardly compresses, and each
        # socket's zlib state cost ~40 KiB of RSS per node at 5,000 nodes (docs/performance.md).
        # HTTP_PROTOCOL: uvicorn's httptools protocol plus a deadline for the request head (silent and
        # slow-header connections), docs/security.md.
        limits = ["--ws-max-size", *size] if size else []
        return [
            sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--lifespan", "on", "--no-access-log",
            "--no-server-header", "--ws-per-message-deflate", "false", "--http", HTTP_PROTOCOL, *limits,
            "--ws-ping-interval", str(ping_interval_s), "--ws-ping-timeout", str(ping_timeout_s),
            "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_S),
            *(["--workers", str(processes)] if processes > 1 else []), *extra_args, app,
        ]  # fmt: skip
    raise ValueError(f"unknown ASGI server {server!r}; one of {', '.join(SERVERS)}")
