"""The raw limit: what the same server software does per second with our protocol's traffic of one job
when the application does nothing (bench/echo.py).

One "job equivalent" is the four messages a job costs us on the wire, with the same sizes and clients:
the REST exchange (POST of a submission-sized body with httpx, a job-sized answer) and the node
exchange (a WebSocket message and its answer with `websockets`, as the simulated nodes use). K workers
do job equivalents back to back, each its POST then one WebSocket round trip on one of M sockets (round
robin; several workers may share a socket, as jobs share a node's). The workers are spread over
`processes` client processes so the client is not the limit before the server is.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.child import Child, split_evenly
from bench.measure import CpuWindow, summary_ms, usage_rows
from bench.stack import ServerKind, app_server
from jobs.loadgen import framed_audio
from supervisor.webserver import DEFAULT_SERVER

MESSAGES_PER_JOB = 4
# The size of a job_result frame, measured on the scheduler.
WS_MESSAGE = '{"pad":"' + "y" * (469 - 10) + '"}'


@dataclass(frozen=True)
class RawScenario:
    server: ServerKind = DEFAULT_SERVER  # type: ignore[assignment]
    concurrency: int = 16
    sockets: int = 10
    processes: int = 2
    warmup_s: float = 2.0
    duration_s: float = 8.0


@dataclass(frozen=True)
class ClientConfig:
    url: str
    ws_url: str
    concurrency: int
    sockets: int


class Socket:
    """One WebSocket on which several workers may wait: answers come back in order, so a FIFO of futures
    matches each answer to its request."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for _ in self.ws:
            self.waiting.popleft().set_result(None)

    async def round_trip(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        await self.ws.send(WS_MESSAGE)
        await future


def client(config: ClientConfig, ready: Event, stop: Event, results: Connection) -> None:
    """Process entry point: job equivalents until `stop`; sends [(done_at, latency_s)]."""
    logging.basicConfig(level=logging.ERROR)
    results.send(asyncio.run(_client(config, ready, stop)))


async def _client(config: ClientConfig, ready: Event, stop: Event) -> list[tuple[float, float]]:
    body = json.dumps(_submission()).encode()
    sockets = [Socket(await connect(f"{config.ws_url}/ws", ping_interval=None, max_size=None)) for _ in range(config.sockets)]
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    finished: list[tuple[float, float]] = []
    stopping = asyncio.Event()
    async with httpx.AsyncClient(base_url=config.url, limits=limits) as http:

        async def worker(index: int) -> None:
            socket = sockets[index % len(sockets)]
            while not stopping.is_set():
                started = time.perf_counter()
                response = await http.post("/api/v1/jobs", content=body, headers={"content-type": "application/json"})
                response.raise_for_status()
                await socket.round_trip()
                finished.append((time.time(), time.perf_counter() - started))

        workers = [asyncio.create_task(worker(index)) for index in range(config.concurrency)]
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        stopping.set()
        await asyncio.gather(*workers)
    for socket in sockets:
        await socket.ws.close()
    return finished


def _submission() -> dict[str, Any]:
    """A body like the load generator's: 3,200 bytes of framed audio, base64."""
    audio = base64.b64encode(framed_audio(random.Random(1), 3200)).decode("ascii")
    return {"src_lang": "en", "tgt_lang": "zh", "audio": audio, "audio_format": "opus", "sample_rate": 16000}


def run(scenario: RawScenario) -> dict[str, Any]:
    with app_server(scenario.server, "bench.echo:application") as server:
        clients = [
            Child(f"raw client {index + 1}", client, ClientConfig(server.url, server.ws_url, workers, max(1, sockets)))
            for index, (workers, sockets) in enumerate(
                zip(split_evenly(scenario.concurrency, scenario.processes), split_evenly(scenario.sockets, scenario.processes), strict=True)
            )
        ]
        for child in clients:
            child.start(ready_timeout=60)
        try:
            time.sleep(scenario.warmup_s)
            cpu = CpuWindow({f"{scenario.server} (echo app)": [server.pid or 0], **{c.name: [c.pid] for c in clients}})
            cpu.start()
            started = time.time()
            time.sleep(scenario.duration_s)
            ended = time.time()
            usage = cpu.stop()
        finally:
            finished = [item for child in clients for item in child.stop()]
    inside = [latency for done_at, latency in finished if started <= done_at < ended]
    seconds = ended - started
    return {
        "scenario": asdict(scenario),
        "window_s": round(seconds, 3),
        "job_equivalents": len(inside),
        "job_equivalents_per_s": round(len(inside) / seconds, 2),
        "messages_per_s": round(MESSAGES_PER_JOB * len(inside) / seconds, 2),
        "round_trip_ms": summary_ms(inside),
        "processes": usage_rows(usage, seconds, len(inside)),
    }
