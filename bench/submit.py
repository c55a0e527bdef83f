"""K concurrent REST submitters (`jobs.loadgen.run_load`) in a process of their own, until told to stop.

`run_load` submits a fixed count; the benchmark wants a time window, so it is given a count it cannot reach
and cancelled when the parent sets `stop`. Every finished job is reported with the wall-clock time it
finished, so the parent can keep exactly the jobs that ended inside its measured window.

With `rate` set, job submissions are paced to that many per second (an open-loop arrival rate, as long as
the concurrency suffices): the wait for a submission slot happens inside `run_load`'s own timing, so it is
measured per job (a context variable of the submitting task) and taken off that job's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import httpx

from bench.child import split_evenly
from jobs.loadgen import JOBS_PATH, JobRecord, LoadConfig, run_load

# More jobs than any window can finish: run_load is cancelled long before.
UNREACHABLE_COUNT = 200_000
# Seconds the current job (of this task) waited for its pacing slot.
_paced_wait: ContextVar[float] = ContextVar("paced_wait", default=0.0)


@dataclass(frozen=True)
class SubmitConfig:
    urls: list[str]
    api_key: str
    concurrency: int
    rate: float | None = None


@dataclass(frozen=True)
class Finished:
    job_id: str | None
    state: str | None
    reason: str | None
    done_at: float  # time.time()
    latency_s: float | None


class Pacer:
    """Hands out submission slots `1 / rate` apart; a late caller gets the next free slot at once."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_slot = 0.0

    async def wait(self) -> float:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
        return slot - now


class PacedTransport(httpx.AsyncHTTPTransport):
    """An HTTP transport that holds job submissions (POST /api/v1/jobs) to the pacer's rate."""

    def __init__(self, pacer: Pacer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pacer = pacer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == JOBS_PATH:
            _paced_wait.set(_paced_wait.get() + await self.pacer.wait())
        return await super().handle_async_request(request)


def run(config: SubmitConfig, ready: Event, stop: Event, results: Connection) -> None:
    """Process entry point: submit until `stop` (`ready` once submitting), then send the finished jobs."""
    logging.basicConfig(level=logging.ERROR)
    results.send(asyncio.run(_run(config, ready, stop)))


async def _run(config: SubmitConfig, ready: Event, stop: Event) -> list[Finished]:
    finished: list[Finished] = []

    def on_done(record: JobRecord) -> None:
        paced = _paced_wait.get()
        _paced_wait.set(0.0)
        latency = None if record.latency_s is None else record.latency_s - paced
        finished.append(Finished(record.job_id, record.state, record.reason, time.time(), latency))

    # One pacer for all instances: the rate is the total arrival rate.
    pacer = Pacer(config.rate) if config.rate else None
    shares = [(url, share) for url, share in zip(config.urls, split_evenly(config.concurrency, len(config.urls)), strict=True) if share]
    clients = [_client(url, share, pacer) for url, share in shares]
    tasks = [
        asyncio.create_task(run_load(_load_config(config, url, share), client=client, on_job_done=on_done))
        for (url, share), client in zip(shares, clients, strict=True)
    ]
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for client in clients:
        await client.aclose()
    return finished


def _load_config(config: SubmitConfig, url: str, concurrency: int) -> LoadConfig:
    return LoadConfig(
        api_key=config.api_key, url=url, count=UNREACHABLE_COUNT, concurrency=concurrency,
        src_lang="en", tgt_lang="zh", wait_s=10, job_timeout_s=30,
    )  # fmt: skip


def _client(url: str, concurrency: int, pacer: Pacer | None) -> httpx.AsyncClient:
    """The client run_load would make for itself, with the pacing transport when a rate is set."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = PacedTransport(pacer, limits=limits) if pacer else httpx.AsyncHTTPTransport(limits=limits)
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=httpx.Timeout(20.0, connect=10.0))
