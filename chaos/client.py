"""The chaos run's client: submits jobs at a steady rate to both web processes and follows every accepted
job to its end, writing the client's half of the history (`client.jsonl`).

Every job carries an Idempotency-Key, so a submission whose answer was lost (a web process killed or frozen
mid-request) is sent again, to the other process, without creating a second job: the client always learns
the id of what the scheduler accepted. It behaves as a patient production client would: a transport error
or a 5xx is retried on the other server, a 404 for an accepted job is recorded and asked again, and a job is
given up only long after its deadline bound.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from jobs.loadgen import framed_audio

TERMINAL = ("DONE", "FAILED", "CANCELLED")
# Long-poll seconds per GET, and the HTTP timeout around it: a frozen web process costs one timeout.
WAIT_S = 5.0
REQUEST_TIMEOUT_S = WAIT_S + 4.0
# How long a submission is retried before the job counts as never accepted.
SUBMIT_GIVE_UP_S = 30.0


class JsonLines:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": time.time(), "ev": event, **fields}, separators=(",", ":"))
        with self.lock:
            os.write(self.fd, (line + "\n").encode())


class ChaosClient:
    def __init__(self, urls: list[str], api_key: str, history: Path, follow_s: float, seed: int = 1) -> None:
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.log = JsonLines(history)
        self.follow_s = follow_s
        self.rng = random.Random(seed)
        self.run_tag = f"{int(time.time())}-{seed}"
        self.accepted = 0
        self.ended = 0

    async def run(self, rate_per_s: float, duration_s: float) -> None:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
        async with httpx.AsyncClient(headers=self.headers, limits=limits, timeout=REQUEST_TIMEOUT_S) as http:
            tasks: list[asyncio.Task[None]] = []
            started = time.monotonic()
            index = 0
            while time.monotonic() - started < duration_s:
                tasks.append(asyncio.create_task(self.job(http, index)))
                index += 1
                await asyncio.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
            await asyncio.gather(*tasks)

    async def job(self, http: httpx.AsyncClient, index: int) -> None:
        key = f"chaos-{self.run_tag}-{index}"
        body = {
            "src_lang": "zh",
            "tgt_lang": "en",
            "audio": base64.b64encode(framed_audio(self.rng, 640)).decode("ascii"),
            "session_id": f"chaos-{self.run_tag}",
            "utterance_index": index,
        }
        accepted = await self.submit(http, index, key, body)
        if accepted is not None:
            self.accepted += 1
            await self.follow(http, accepted)

    async def submit(self, http: httpx.AsyncClient, index: int, key: str, body: dict[str, Any]) -> dict[str, Any] | None:
        first = time.time()
        tries = 0
        last = ""
        while time.time() - first < SUBMIT_GIVE_UP_S:
            url = self.urls[(index + tries) % len(self.urls)]
            tries += 1
            try:
                response = await http.post(f"{url}/api/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__} from {url}"
                self.log.write("http", call="submit", server=url, status=None, error=type(exc).__name__, i=index)
                await asyncio.sleep(0.3)
                continue
            if response.status_code == 202:
                job = response.json()
                self.log.write(
                    "submit", i=index, key=key, job=job["job_id"], created_at=epoch_ms(job.get("created_at")),
                    t_first=first, server=url, tries=tries,
                )  # fmt: skip
                return job
            code = _error_code(response)
            self.log.write("http", call="submit", server=url, status=response.status_code, code=code, i=index)
            last = f"HTTP {response.status_code} {code}"
            if response.status_code not in (429, 502, 503, 504) and response.status_code < 500:
                # A 4xx for a valid body is the scheduler refusing work it should take: never retried.
                break
            await asyncio.sleep(min(2.0, float(response.headers.get("Retry-After") or 0.5)))
        self.log.write("not_accepted", i=index, key=key, t_first=first, tries=tries, last=last)
        return None

    async def follow(self, http: httpx.AsyncClient, accepted: dict[str, Any]) -> None:
        job_id = accepted["job_id"]
        created = (epoch_ms(accepted.get("created_at")) or time.time() * 1000) / 1000
        tries = 0
        last_state = accepted.get("state")
        while time.time() - created < self.follow_s:
            url = self.urls[tries % len(self.urls)]
            try:
                response = await http.get(f"{url}/api/v1/jobs/{job_id}", params={"wait": WAIT_S})
            except httpx.HTTPError as exc:
                tries += 1
                self.log.write("http", call="follow", server=url, status=None, error=type(exc).__name__, job=job_id)
                await asyncio.sleep(0.3)
                continue
            if response.status_code == 200:
                job = response.json()
                last_state = job.get("state")
                if last_state in TERMINAL:
                    self.ended += 1
                    self.log.write("end", job=job_id, **_end_fields(job))
                    return
                continue
            tries += 1
            code = _error_code(response)
            if response.status_code == 404:
                self.log.write("not_found", job=job_id, server=url)
            else:
                self.log.write("http", call="follow", server=url, status=response.status_code, code=code, job=job_id)
            await asyncio.sleep(0.5)
        self.log.write("gave_up", job=job_id, last_state=last_state)


def epoch_ms(value: Any) -> int | None:
    """A point in time as the API writes it (ISO 8601 UTC, docs/time.md) as epoch milliseconds, which is what
    the history files and the checker keep; a number is taken as epoch milliseconds already."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return int(value)
    return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _end_fields(job: dict[str, Any]) -> dict[str, Any]:
    error = job.get("error") or {}
    return {
        "state": job.get("state"),
        "reason": error.get("code") or "",
        "ended_at": epoch_ms((job.get("timings") or {}).get("ended_at")),
        "created_at": epoch_ms(job.get("created_at")),
        "attempts": [
            {
                key: epoch_ms(attempt.get(key)) if key.endswith("_at") else attempt.get(key)
                for key in ("attempt_id", "node_id", "state", "reason", "started_at", "ended_at")
            }
            for attempt in job.get("attempts") or []
        ],
    }


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def run_in_thread(client: ChaosClient, rate_per_s: float, duration_s: float) -> threading.Thread:
    """The client runs in a thread of its own, so the main thread stays free to start and kill processes."""
    thread = threading.Thread(target=lambda: asyncio.run(client.run(rate_per_s, duration_s)), name="chaos-client", daemon=True)
    thread.start()
    return thread
