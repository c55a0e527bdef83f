"""Drive job load through the REST API (PROTOCOL.md section 3) and measure it as a client sees it.

`run_load` submits `count` jobs with `concurrency` workers over one `httpx.AsyncClient`, follows every job
to a terminal state (long-poll on `POST /api/v1/jobs?wait=`, then `GET /api/v1/jobs/{id}?wait=`), and
returns a `LoadReport`: terminal states and reasons, HTTP errors by status, throughput and latency
percentiles of submit -> terminal.

Django-free on purpose: the `submit_jobs` command, the tests and benchmarks import it without settings.
The API key is sent as a Bearer header and never appears in a report, a log line or an exception text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import struct
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS_PATH = "/api/v1/jobs"
TERMINAL_STATES = ("DONE", "FAILED", "CANCELLED")
# The API refuses longer long-polls.
MAX_WAIT_S = 30.0
PERCENTILES = (50, 95, 99)
# Statuses worth retrying: the server says "later" (429, 503) or a proxy in front of it hiccuped.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Never sleep longer than this on a Retry-After, so a misconfigured server cannot stall the run.
MAX_RETRY_AFTER_S = 5.0
# The web client sends Opus packets of a 20 ms frame; this size keeps the framing realistic.
OPUS_PACKET_BYTES = 160

JobOutcome = Literal["terminal", "not_submitted", "unfinished"]


@dataclass
class LoadConfig:
    api_key: str
    url: str = DEFAULT_URL
    count: int = 100
    concurrency: int = 10
    src_lang: str = "zh"
    tgt_lang: str = "en"
    audio_bytes: int = 3200
    # Long-poll seconds per request (POST ?wait= and GET ?wait=); 0 submits without waiting and polls.
    wait_s: float = 10.0
    # Send an Idempotency-Key per job; then, and only then, a POST that failed in transit or got a
    # retryable status is retried with the same key, since the server cannot create the job twice.
    idempotency: bool = False
    post_retries: int = 2
    # The client gives up on a job this long after submitting it (it then counts as unfinished).
    job_timeout_s: float = 120.0
    # Minimum spacing of GETs for one job, so a server that answers a long-poll at once is not hammered.
    poll_interval_s: float = 0.2
    # Optional: every job in this session, numbered by `utterance_index` (the server picks otherwise).
    session_id: str | None = None
    # Further body fields (pipeline, timeout_ms, enable_streaming_asr...), sent as given.
    job_fields: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        key_id, dot, secret = self.api_key.partition(".")
        if not dot or not key_id or not secret:
            raise ValueError("the API key must look like <id>.<secret>")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"the URL must start with http:// or https://, got {self.url!r}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.audio_bytes < 1:
            raise ValueError("audio_bytes must be at least 1 (the API refuses empty audio)")
        if not 0 <= self.wait_s <= MAX_WAIT_S:
            raise ValueError(f"wait must be between 0 and {MAX_WAIT_S:g} seconds")
        if not self.job_timeout_s > 0:
            raise ValueError("job_timeout_s must be positive")
        if self.post_retries < 0:
            raise ValueError("post_retries must not be negative")

    @property
    def key_id(self) -> str:
        """The public part of the API key: safe to print."""
        return self.api_key.partition(".")[0]


@dataclass
class JobRecord:
    index: int
    outcome: JobOutcome = "not_submitted"
    job_id: str | None = None
    state: str | None = None
    reason: str | None = None
    latency_s: float | None = None


@dataclass
class LoadReport:
    url: str
    requested: int
    concurrency: int
    duration_s: float
    records: list[JobRecord]
    http_errors: Counter[int] = field(default_factory=Counter)
    # "status CODE" -> count, from the API's error body, to tell a 503 DEPENDENCY_DOWN from a 503 NO_CAPACITY.
    http_error_codes: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def submitted(self) -> int:
        return sum(record.job_id is not None for record in self.records)

    @property
    def not_submitted(self) -> int:
        return sum(record.outcome == "not_submitted" for record in self.records)

    @property
    def unfinished(self) -> int:
        return sum(record.outcome == "unfinished" for record in self.records)

    @property
    def terminal(self) -> Counter[str]:
        return Counter(
            record.state for record in self.records if record.outcome == "terminal" and record.state
        )

    @property
    def reasons(self) -> dict[str, Counter[str]]:
        """Per terminal state, the reasons jobs ended with (DONE jobs have none)."""
        by_state: dict[str, Counter[str]] = {}
        for record in self.records:
            if record.outcome == "terminal" and record.state and record.reason:
                by_state.setdefault(record.state, Counter())[record.reason] += 1
        return by_state

    @property
    def latencies_s(self) -> list[float]:
        return sorted(
            r.latency_s for r in self.records if r.outcome == "terminal" and r.latency_s is not None
        )

    @property
    def throughput(self) -> float:
        """Terminal jobs per second of wall time."""
        finished = sum(self.terminal.values())
        return finished / self.duration_s if self.duration_s > 0 else 0.0

    def latency_summary_ms(self) -> dict[str, float | None]:
        values = self.latencies_s
        summary: dict[str, float | None] = {
            f"p{p}": _ms(percentile(values, p)) if values else None for p in PERCENTILES
        }
        summary["max"] = _ms(values[-1]) if values else None
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requested": self.requested,
            "concurrency": self.concurrency,
            "submitted": self.submitted,
            "not_submitted": self.not_submitted,
            "terminal": {state: self.terminal.get(state, 0) for state in TERMINAL_STATES},
            "reasons": {
                state: dict(sorted(reasons.items())) for state, reasons in sorted(self.reasons.items())
            },
            "unfinished": self.unfinished,
            "http_errors": {str(status): n for status, n in sorted(self.http_errors.items())},
            "http_error_codes": dict(sorted(self.http_error_codes.items())),
            "transport_errors": dict(sorted(self.transport_errors.items())),
            "duration_s": round(self.duration_s, 3),
            "throughput_jobs_per_s": round(self.throughput, 3),
            "latency_ms": {"count": len(self.latencies_s), **self.latency_summary_ms()},
        }

    def format_text(self) -> str:
        terminal = self.terminal
        lines = [
            f"Submitted {self.submitted}/{self.requested} jobs to {self.url} with concurrency {self.concurrency} "
            f"in {self.duration_s:.2f} s",
            "Terminal: " + ", ".join(f"{state} {terminal.get(state, 0)}" for state in TERMINAL_STATES),
        ]
        for state, reasons in sorted(self.reasons.items()):
            lines.append(f"  {state} reasons: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
        if self.unfinished:
            lines.append(f"Unfinished (still running when the client gave up): {self.unfinished}")
        if self.not_submitted:
            lines.append(f"Not submitted (refused or unreachable): {self.not_submitted}")
        if self.http_errors:
            parts = []
            for status, n in sorted(self.http_errors.items()):
                codes = [
                    f"{key.partition(' ')[2]} {count}"
                    for key, count in sorted(self.http_error_codes.items())
                    if key.partition(" ")[0] == str(status)
                ]
                parts.append(f"{status} x{n}" + (f" ({', '.join(codes)})" if codes else ""))
            lines.append("HTTP errors: " + ", ".join(parts))
        else:
            lines.append("HTTP errors: none")
        if self.transport_errors:
            lines.append(
                "Transport errors: "
                + ", ".join(f"{k} x{n}" for k, n in sorted(self.transport_errors.items()))
            )
        lines.append(
            f"Throughput: {self.throughput:.2f} jobs/s ({sum(terminal.values())} terminal in {self.duration_s:.2f} s)"
        )
        summary = self.latency_summary_ms()
        if summary["max"] is None:
            lines.append("Latency submit->terminal: no job ended")
        else:
            lines.append(
                "Latency submit->terminal: "
                + ", ".join(f"{name} {value:.1f} ms" for name, value in summary.items() if value is not None)
            )
        return "\n".join(lines)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values: the smallest value with at least p% of all values
    at or below it. It is always an observed latency, never an interpolation between two."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def framed_audio(rng: random.Random, size: int) -> bytes:
    """`size` bytes of random "Opus" in the web client's framing: uint16 LE length, then the packet."""
    out = bytearray()
    while len(out) < size:
        room = size - len(out) - 2
        if room <= 0:
            # Too little left for a header and a byte: pad with random bytes to the exact size asked for.
            out += rng.randbytes(size - len(out))
            break
        packet = min(OPUS_PACKET_BYTES, room)
        out += struct.pack("<H", packet) + rng.randbytes(packet)
    return bytes(out)


class _Run:
    """State shared by the workers of one run."""

    def __init__(self, config: LoadConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client
        self.rng = random.Random(config.seed)
        self.run_id = uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]
        self.http_errors: Counter[int] = Counter()
        self.http_error_codes: Counter[str] = Counter()
        self.transport_errors: Counter[str] = Counter()
        self.records = [JobRecord(index=i) for i in range(config.count)]
        self.next_index = 0
        self.on_done: Callable[[JobRecord], None] | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key}", "Accept": "application/json"}
        headers.update(extra or {})
        return headers

    def _body(self, index: int) -> dict[str, Any]:
        config = self.config
        body: dict[str, Any] = {
            "src_lang": config.src_lang,
            "tgt_lang": config.tgt_lang,
            "audio": base64.b64encode(framed_audio(self.rng, config.audio_bytes)).decode("ascii"),
            "audio_format": "opus",
            "sample_rate": 16000,
        }
        if config.session_id is not None:
            body["session_id"] = config.session_id
            body["utterance_index"] = index
        body.update(config.job_fields)
        return body

    def _record_error(self, response: httpx.Response) -> None:
        self.http_errors[response.status_code] += 1
        code = _error_code(response)
        if code:
            self.http_error_codes[f"{response.status_code} {code}"] += 1

    async def worker(self) -> None:
        while self.next_index < self.config.count:
            index = self.next_index
            self.next_index += 1
            record = self.records[index]
            await self.run_job(record)
            if self.on_done is not None:
                self.on_done(record)

    async def run_job(self, record: JobRecord) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        body = self._body(record.index)
        extra_headers = {}
        if config.idempotency:
            extra_headers["Idempotency-Key"] = f"loadgen-{self.run_id}-{record.index}"
        params = {"wait": _format_wait(config.wait_s)} if config.wait_s > 0 else {}
        started = loop.time()
        deadline = started + config.job_timeout_s

        submitted = await self._submit(body, params, self._headers(extra_headers))
        if submitted is None:
            return
        status, job = submitted
        job_id = job.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            # A 2xx without a job id is a broken answer; the job may exist, but the client cannot follow it.
            self.transport_errors["NoJobIdInAnswer"] += 1
            return
        record.job_id = job_id
        record.outcome = "unfinished"

        # A 202 is the short form even when the job already ended (it failed at once); only the full job
        # says why, so one GET without waiting fetches it.
        needs_detail = status == 202 and job.get("state") in ("FAILED", "CANCELLED")
        last_get = -math.inf
        while job.get("state") not in TERMINAL_STATES or needs_detail:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            gap = config.poll_interval_s - (loop.time() - last_get)
            if gap > 0:
                await asyncio.sleep(min(gap, remaining))
            last_get = loop.time()
            poll_wait = 0.0 if needs_detail else min(config.wait_s, max(1.0, math.ceil(remaining)))
            fetched = await self._get(job_id, poll_wait, deadline)
            if fetched is None:
                return
            job = fetched
            needs_detail = False
        record.outcome = "terminal"
        record.state = job["state"]
        record.reason = _reason(job)
        record.latency_s = loop.time() - started

    async def _submit(
        self, body: dict[str, Any], params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]] | None:
        """(status, job) once the server accepted the job, or None when it never did."""
        attempts = 1 + (self.config.post_retries if self.config.idempotency else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self.client.post(JOBS_PATH, json=body, params=params, headers=headers)
            except httpx.TransportError as exc:
                self.transport_errors[type(exc).__name__] += 1
                if last:
                    return None
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.is_success:
                job = _json_object(response)
                if job is None:
                    self.transport_errors["BadJobAnswer"] += 1
                    return None
                return response.status_code, job
            self._record_error(response)
            if last or response.status_code not in RETRYABLE_STATUSES:
                return None
            await asyncio.sleep(_retry_after(response, attempt))
        return None

    async def _get(self, job_id: str, wait_s: float, deadline: float) -> dict[str, Any] | None:
        """The job, or None when the client gives up on it (deadline, or an answer retrying cannot fix)."""
        loop = asyncio.get_running_loop()
        params = {"wait": _format_wait(wait_s)} if wait_s > 0 else {}
        attempt = 0
        while loop.time() < deadline:
            try:
                response = await self.client.get(
                    f"{JOBS_PATH}/{job_id}", params=params, headers=self._headers()
                )
            except httpx.TransportError as exc:
                self.transport_errors[type(exc).__name__] += 1
            else:
                if response.is_success:
                    job = _json_object(response)
                    if job is not None and isinstance(job.get("state"), str):
                        return job
                    self.transport_errors["BadJobAnswer"] += 1
                    return None
                self._record_error(response)
                # 404 (expired or lost), 401/403 (key revoked): asking again will not help.
                if response.status_code not in RETRYABLE_STATUSES:
                    return None
                await asyncio.sleep(min(_retry_after(response, attempt), max(0.0, deadline - loop.time())))
                attempt += 1
                continue
            await asyncio.sleep(min(_backoff(attempt), max(0.0, deadline - loop.time())))
            attempt += 1
        return None


def _format_wait(seconds: float) -> str:
    # "10" rather than "10.0": the API takes any number, but integers read better in access logs.
    return f"{seconds:g}"


def _backoff(attempt: int) -> float:
    return min(MAX_RETRY_AFTER_S, 0.1 * 2**attempt)


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    with contextlib.suppress(ValueError):
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    return _backoff(attempt)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _error_code(response: httpx.Response) -> str | None:
    data = _json_object(response)
    error = data.get("error") if data else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else None


def _reason(job: dict[str, Any]) -> str | None:
    """Why a job ended: `error.code`, else the last attempt's reason; a cancelled job without either was
    cancelled by a client. DONE jobs have no reason."""
    state = job.get("state")
    if state == "DONE":
        return None
    error = job.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str) and error["code"]:
        return error["code"]
    attempts = job.get("attempts")
    if isinstance(attempts, list) and attempts:
        last = attempts[-1]
        if isinstance(last, dict) and isinstance(last.get("reason"), str) and last["reason"]:
            return last["reason"]
    if isinstance(job.get("reason"), str) and job["reason"]:
        return job["reason"]
    return "CANCELLED" if state == "CANCELLED" else "UNKNOWN"


async def run_load(
    config: LoadConfig,
    *,
    client: httpx.AsyncClient | None = None,
    on_job_done: Callable[[JobRecord], None] | None = None,
) -> LoadReport:
    """Submit `config.count` jobs with `config.concurrency` workers and follow each to the end.

    `client` lets a caller bring its own (a benchmark sharing one, a test with a mock transport); its
    base URL must then be the API root. `on_job_done` is called as each job finishes, for progress output.
    """
    owned = client is None
    if client is None:
        # One connection per worker; the read timeout must outlast the longest long-poll.
        client = httpx.AsyncClient(
            base_url=config.url,
            limits=httpx.Limits(
                max_connections=config.concurrency, max_keepalive_connections=config.concurrency
            ),
            timeout=httpx.Timeout(config.wait_s + 10.0, connect=10.0),
        )
    run = _Run(config, client)
    run.on_done = on_job_done
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        workers = min(config.concurrency, config.count)
        await asyncio.gather(*(run.worker() for _ in range(workers)))
    finally:
        if owned:
            await client.aclose()
    return LoadReport(
        url=config.url,
        requested=config.count,
        concurrency=config.concurrency,
        duration_s=loop.time() - started,
        records=run.records,
        http_errors=run.http_errors,
        http_error_codes=run.http_error_codes,
        transport_errors=run.transport_errors,
    )


def run_load_sync(config: LoadConfig) -> LoadReport:
    """`run_load` for callers without an event loop (the management command)."""
    return asyncio.run(run_load(config))
