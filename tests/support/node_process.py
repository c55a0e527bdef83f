"""A node in a process of its own, so a test can freeze it (SIGSTOP) the way a hung host freezes: its socket
stays open, nothing answers, not even the WebSocket pings that the `websockets` library (like the real
node's `ws`) answers by itself.

`python -m tests.support.node_process <ws_url> <token>` registers, sends one healthy heartbeat, prints the
node id once the scheduler says `ready`, then only reads frames (it never answers a job).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def _run(ws_url: str, token: str) -> None:
    from tests.factories import heartbeat_message
    from tests.support.wire import Wire

    wire = await Wire.connect(ws_url, token)
    node_id = (await wire.register())["node_id"]
    await wire.send(heartbeat_message(node_id))
    while (await wire.expect("node_status", timeout=30))["status"] != "ready":
        pass
    print(node_id, flush=True)
    while True:
        await wire.ws.recv()


def start(ws_url: str, token: str) -> tuple[subprocess.Popen[str], str]:
    """Start one such node; returns the process and the node id, once it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.node_process", ws_url, token],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    node_id = process.stdout.readline().strip()  # type: ignore[union-attr]
    if not node_id.startswith("node-"):
        process.kill()
        raise RuntimeError(f"the node process did not register (exit code {process.poll()})")
    return process, node_id


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1], sys.argv[2]))
