"""One simulated node in a process of its own, so the fault schedule can SIGKILL or SIGSTOP it like a real
node's machine, writing every job frame it gets and every result it sends to the run's history.

Run as `python -m chaos.node`, with its configuration as one JSON object on stdin (it holds the node token,
which must stay off the process list). The node answers like `nodes.simulator.SimulatedNode` with the
profile's latency and outcome rates; a restarted node comes back with the id it had, as the real node
does after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from nodes.simulator import Message, SimulatedNode, SimulatedNodeConfig


@dataclass(frozen=True)
class Profile:
    """How a node of this kind answers: mean latency and its spread, outcome rates, capacity."""

    processing_ms: float
    jitter_ms: float
    failure_rate: float = 0.0
    silent_drop_rate: float = 0.0
    max_concurrent_jobs: int | None = None


PROFILES: dict[str, Profile] = {
    "fast": Profile(processing_ms=150, jitter_ms=100),
    # Slow but inside the job timeout the stack runs with, so its jobs are late, not lost.
    "slow": Profile(processing_ms=2000, jitter_ms=1000, max_concurrent_jobs=2),
    "failing": Profile(processing_ms=300, jitter_ms=200, failure_rate=0.5),
    # Takes every job and never answers: only the job timeout ends its attempts.
    "silent": Profile(processing_ms=100, jitter_ms=0, silent_drop_rate=1.0, max_concurrent_jobs=2),
}


class History:
    """Appends one JSON line per event with a single write on an O_APPEND descriptor: lines of several
    processes never interleave, and a SIGKILL loses nothing written before it."""

    def __init__(self, path: str, proc: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.proc = proc

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "ev": event, "proc": self.proc, **fields}, separators=(",", ":"))
        os.write(self.fd, (line + "\n").encode())


class RecordingNode(SimulatedNode):
    """A simulated node that records its job frames, and reaches the scheduler through several URLs the way
    a node behind a load balancer does: each new connection after a lost one goes to the next URL."""

    def __init__(self, config: SimulatedNodeConfig, history: History, urls: list[str]) -> None:
        super().__init__(config)
        self.history = history
        self.urls = urls
        self.url_index = 0

    async def _connect_once(self) -> bool:
        self.config.url = self.urls[self.url_index % len(self.urls)]
        self.url_index += 1
        return await super()._connect_once()

    async def on_job_assign(self, message: Message) -> None:
        job_id = message.get("job_id")
        # Recorded before the first await: the order of these lines is the order frames arrived in.
        self.history.write(
            "assign",
            node=self.node_id,
            job=job_id,
            attempt=message.get("attempt_id"),
            seen_before=job_id in self.seen_job_ids,
            active=len(self.active_jobs) + 1,
        )
        await super().on_job_assign(message)

    async def on_job_cancel(self, message: Message) -> None:
        self.history.write("cancel", node=self.node_id, job=message.get("job_id"), reason=message.get("reason"))
        await super().on_job_cancel(message)

    async def send(self, message: Message) -> None:
        await super().send(message)
        if message.get("type") == "job_result":
            extra = message.get("extra") or {}
            self.history.write(
                "result",
                node=self.node_id,
                job=message.get("job_id"),
                attempt=message.get("attempt_id"),
                success=message.get("success"),
                write_off=extra.get("reason") == "NO_TEXT_ASSIGNED",
            )

    async def _on_register_ack(self, message: Message) -> None:
        await super()._on_register_ack(message)
        if self.node_id is not None:
            self.history.write("registered", node=self.node_id)


def node_config(spec: dict[str, Any]) -> SimulatedNodeConfig:
    profile = PROFILES[spec["profile"]]
    return SimulatedNodeConfig(
        url=spec["urls"][0],
        token=spec["token"],
        name=spec["name"],
        languages=list(spec.get("languages") or ["en", "zh"]),
        max_concurrent_jobs=profile.max_concurrent_jobs,
        heartbeat_interval_s=float(spec["heartbeat_interval_s"]),
        # Back within a second of a web process dying, as the real node's 5 s would only slow the run down.
        reconnect_initial_s=0.5,
        reconnect_max_s=2.0,
        seed=spec.get("seed"),
        processing_ms=profile.processing_ms,
        processing_jitter_ms=profile.jitter_ms,
        failure_rate=profile.failure_rate,
        silent_drop_rate=profile.silent_drop_rate,
    )


async def run(spec: dict[str, Any]) -> None:
    history = History(spec["history"], spec["name"])
    node = RecordingNode(node_config(spec), history, list(spec["urls"]))
    node.node_id = spec.get("node_id")
    history.write("started", node=node.node_id, profile=spec["profile"], pid=os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await node.start()
    await stop.wait()
    with contextlib.suppress(Exception):
        await node.stop()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads(sys.stdin.read())
    asyncio.run(run(spec))


if __name__ == "__main__":
    main()
