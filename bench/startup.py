"""`python -m bench.startup`: how long a node that starts busy takes to be ready and do its first job.

The real lingua node sends its first heartbeat right after the register ack, while its machine is often still
busy starting it, then one every 15 s. Each run here connects one node like it (heartbeats every 15 s) whose
first heartbeat reports `cpu_percent: 100`, waits for `ready`, then submits one job and waits for its end.
Printed per run: connect -> register ack, ack -> ready, and the job's submit -> DONE time, plus the heartbeats
the node had sent by then (1 means the busy first one was enough).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench.stack import Stack, scheduler_stack
from nodes.simulator import Message, SimulatedNode, SimulatedNodeConfig

AUDIO = "AwBhYmM="  # one three-byte Opus packet with its uint16 length prefix
REAL_HEARTBEAT_INTERVAL_S = 15.0


class BusyAtStart(SimulatedNode):
    def build_heartbeat(self) -> Message:
        message = super().build_heartbeat()
        if not self.sent_of_type("node_heartbeat"):
            message["resource_usage"]["cpu_percent"] = 100.0
        return message


async def run_once(ws_url: str, url: str, token: str, key: str, name: str) -> tuple[float, float, float, str, int]:
    config = SimulatedNodeConfig(url=f"{ws_url}/ws/node", token=token, processing_ms=0,
                                 heartbeat_interval_s=REAL_HEARTBEAT_INTERVAL_S, name=name)  # fmt: skip
    node = BusyAtStart(config)
    started = time.perf_counter()
    await node.start()
    try:
        await node.wait_for(lambda: node.node_id is not None, timeout=10)
        acked = time.perf_counter()
        await node.wait_for(lambda: node.last_status == "ready", timeout=2 * REAL_HEARTBEAT_INTERVAL_S)
        ready = time.perf_counter()
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as api:
            sent = time.perf_counter()
            answer = await api.post("/api/v1/jobs", json={"src_lang": "en", "tgt_lang": "zh", "audio": AUDIO},
                                    params={"wait": 30})  # fmt: skip
            done = time.perf_counter()
        heartbeats = len(node.sent_of_type("node_heartbeat"))
    finally:
        await node.stop()
    return (acked - started) * 1000, (ready - acked) * 1000, (done - sent) * 1000, answer.json()["state"], heartbeats


async def measure(stack: Stack, runs: int) -> None:
    to_ready = []
    for run in range(runs):
        ack_ms, ready_ms, job_ms, state, heartbeats = await run_once(
            stack.ws_url, stack.url, stack.node_token, stack.api_key, f"startup-{run}"
        )
        to_ready.append(ready_ms)
        print(f"run {run}: connect->ack {ack_ms:.0f} ms, ack->ready {ready_ms:.0f} ms, "
              f"job {state} in {job_ms:.0f} ms, heartbeats sent {heartbeats}")  # fmt: skip
    print(f"ack->ready over {runs} runs: median {statistics.median(to_ready):.0f} ms, max {max(to_ready):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    # The stack is set up (migrations, tokens) outside the event loop: Django's ORM refuses to run inside one.
    with scheduler_stack({"NODE_HEARTBEAT_INTERVAL_S": str(REAL_HEARTBEAT_INTERVAL_S)}) as stack:
        asyncio.run(measure(stack, runs))


if __name__ == "__main__":
    main()
