"""One simulated lingua node: connection, registration, heartbeats, reconnects, and jobs answered like the real client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from nodes.simulator.config import (
    JobOutcome,
    JobPlan,
    Message,
    SimulatedNodeConfig,
    display_url,
    reconnect_delays,
)
from nodes.simulator.frames import NodeFrames, _asr_text, _partial_offsets

logger = logging.getLogger(__name__)

class SimulatedNode(NodeFrames):
    """One simulated lingua node: connects, registers, heartbeats, reconnects, answers jobs like the real
    node (see `on_job_assign` and the job fields of `SimulatedNodeConfig`) and records what it hears.

    Everything received is kept in plain lists so tests can assert on it, next to the job counters
    (`peak_concurrency`, `results_sent`, `jobs_completed`, `duplicates_seen`, `outcomes`); `wait_for`
    wakes up on every change of that state.
    """

    def __init__(self, config: SimulatedNodeConfig) -> None:
        self.config = config
        self.node_id: str | None = None
        self.registered = asyncio.Event()
        self.connected = asyncio.Event()
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self.register_acks: list[Message] = []
        self.errors: list[Message] = []
        self.controls: list[Message] = []
        self.statuses: list[Message] = []
        self.last_status: str | None = None
        self.job_assigns: list[Message] = []
        self.job_cancels: list[Message] = []
        self.close_codes: list[int | None] = []
        self.handshake_statuses: list[int] = []
        # Why the latest connection attempt failed, for a command that must say why it could not connect.
        self.last_connect_error = ""
        self.connect_failures: int = 0
        self.connections: int = 0
        self.draining: bool = False
        # Jobs a processing hook considers in flight; the heartbeat reports their count as running_jobs.
        self.active_jobs: dict[str, Message] = {}
        # Counters for tests and the status line.
        self.peak_concurrency: int = 0  # most jobs in flight at once
        self.results_sent: int = 0  # every job_result frame delivered, write-offs and refusals included
        self.jobs_completed: int = 0  # jobs that got their own result (success or error), refusals excluded
        self.duplicates_seen: int = 0  # job_assigns refused as DUPLICATE_JOB_ID (or _UTTERANCE_INDEX)
        # Per outcome: success, failure, model_not_available, silent_drop, duplicate, cancelled,
        # write_off, undelivered (the socket was gone when the result was ready).
        self.outcomes: Counter[str] = Counter()
        # Like the real node's per-process dedup: kept across reconnects, never cleared.
        self.seen_job_ids: set[str] = set()
        self._seen_utterances: set[tuple[Any, Any]] = set()
        # Jobs taken for processing, oldest first: the write-off candidates.
        self._job_history: dict[str, Message] = {}
        self._unanswered: set[str] = set()
        self._written_off: set[str] = set()
        self._cancel_events: dict[str, asyncio.Event] = {}
        self.gpu_queue_length: int = 0
        self._window_efficiencies: dict[str, list[float]] = {}
        self._rng = random.Random(config.seed)
        # A separate stream for job outcomes, so the number of heartbeats sent so far (which draw from
        # `_rng`) cannot change which job fails.
        self._job_rng = random.Random(None if config.seed is None else f"jobs-{config.seed}")
        self._ws: ClientConnection | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._changed = asyncio.Event()

    # --- public API ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_connected(self) -> bool:
        return self._ws is not None

    @property
    def is_registered(self) -> bool:
        return self.registered.is_set()

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._run_task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping = False
        self._stop_requested.clear()
        self._run_task = asyncio.create_task(self.run(), name=f"simulated-node-{self.name}")

    async def run(self) -> None:
        """Connect, and reconnect after every unintended close, until `stop()`."""
        delays = reconnect_delays(self.config.reconnect_initial_s, self.config.reconnect_max_s)
        while not self._stopping:
            opened = await self._connect_once()
            if self._stopping or not self.config.reconnect:
                break
            if opened:
                delays = reconnect_delays(self.config.reconnect_initial_s, self.config.reconnect_max_s)
            delay = next(delays)
            logger.info("%s: reconnecting in %.1f s", self.name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)

    async def stop(self) -> None:
        """Close intentionally (code 1000) and do not reconnect."""
        self._stopping = True
        self._stop_requested.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        task, self._run_task = self._run_task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.config.close_timeout_s + 1.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for hook_task in list(self._hook_tasks):
            hook_task.cancel()
        if self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)

    async def send(self, message: Message) -> None:
        """Send one JSON frame on the live connection; raises ConnectionError when there is none."""
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"{self.name} is not connected")
        await ws.send(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
        self.sent.append(message)
        self._notify()

    async def send_heartbeat(self) -> None:
        """Send one heartbeat now, if an id is known (the real client never heartbeats without one)."""
        if self.node_id is None or self._ws is None:
            return
        await self.send(self.build_heartbeat())
        self._window_efficiencies.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking on every frame sent or received and every state change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    if predicate():
                        return
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{self.name}: condition not met within {timeout} s") from None

    def sent_of_type(self, message_type: str) -> list[Message]:
        return [message for message in self.sent if message.get("type") == message_type]

    def record_service_efficiency(self, service_id: str, efficiency: float) -> None:
        """Feed the next heartbeat's `processing_metrics` (the client averages them per heartbeat window)."""
        self._window_efficiencies.setdefault(service_id, []).append(efficiency)

    async def on_job_assign(self, message: Message) -> None:
        """Hook for job processing. The job is already in `job_assigns` (and acked if `send_ack`).

        The default answers like a real node, shaped by the config: a job id seen before is refused with
        a DUPLICATE_JOB_ID PROCESSING_ERROR; otherwise the job is in flight (`active_jobs`, counted by
        heartbeats) for its latency, streams `asr_partial`s if asked to, and ends as drawn by `plan_job`.
        Subclasses may replace it entirely.
        """
        job_id = message.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            logger.warning("%s: ignoring a job_assign without a job_id", self.name)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Everything up to the first await runs in arrival order (hooks start FIFO), which keeps dedup
        # and the seeded draws deterministic however the jobs overlap later.
        if job_id in self.seen_job_ids:
            await self._refuse(message, f"DUPLICATE_JOB_ID: job {job_id} was already received by this node")
            return
        self.seen_job_ids.add(job_id)
        if self.config.reject_duplicate_utterance:
            utterance = (message.get("session_id"), message.get("utterance_index"))
            if utterance in self._seen_utterances:
                await self._refuse(
                    message,
                    f"DUPLICATE_UTTERANCE_INDEX: session {utterance[0]} utterance {utterance[1]} "
                    "was already received by this node",
                )
                return
            self._seen_utterances.add(utterance)
        plan = self.plan_job()
        if plan.outcome == "model_not_available":
            self._job_history[job_id] = message
            self.outcomes["model_not_available"] += 1
            if await self._send_result(self.build_model_not_available(message, _elapsed_ms(loop, started))):
                self.jobs_completed += 1
            return

        cancelled = asyncio.Event()
        self._cancel_events[job_id] = cancelled
        self._job_history[job_id] = message
        self.active_jobs[job_id] = message
        self.peak_concurrency = max(self.peak_concurrency, len(self.active_jobs))
        self._notify()
        try:
            finished = await self._process(message, plan, cancelled, started)
        finally:
            # Out of flight before the result goes out, so no heartbeat counts a job already answered.
            self.active_jobs.pop(job_id, None)
            self._cancel_events.pop(job_id, None)
            self._notify()
        if not finished:
            self.outcomes["cancelled"] += 1
            return
        self.outcomes[plan.outcome] += 1
        if plan.outcome == "silent_drop":
            self._unanswered.add(job_id)
            return
        elapsed_ms = _elapsed_ms(loop, started)
        if plan.outcome == "failure":
            result = self.build_error_result(
                message, "PROCESSING_ERROR", "SIMULATED_FAILURE: injected by failure_rate", elapsed_ms
            )
        else:
            result = self.build_success_result(message, elapsed_ms)
        if not await self._send_result(result):
            return
        self.jobs_completed += 1
        if plan.outcome == "success" and plan.write_off:
            target = self._write_off_target(job_id)
            if target is not None:
                self._written_off.add(target["job_id"])
                self._unanswered.discard(target["job_id"])
                if await self._send_result(self.build_write_off(message, target)):
                    self.outcomes["write_off"] += 1

    async def on_job_cancel(self, message: Message) -> None:
        """Hook for cancellation: stops the job in flight (no result follows), as the client's cancelJob."""
        job_id = message.get("job_id")
        if isinstance(job_id, str):
            self.active_jobs.pop(job_id, None)
            event = self._cancel_events.get(job_id)
            if event is not None:
                event.set()

    def plan_job(self) -> JobPlan:
        """Draw one job's fate from the job stream: always three draws, whatever the outcome."""
        config = self.config
        roll, jitter_roll, write_off_roll = (self._job_rng.random() for _ in range(3))
        outcome: JobOutcome = "success"
        threshold = 0.0
        bands: tuple[tuple[JobOutcome, float], ...] = (
            ("silent_drop", config.silent_drop_rate),
            ("model_not_available", config.model_not_available_rate),
            ("failure", config.failure_rate),
        )
        for candidate, rate in bands:
            threshold += rate
            if roll < threshold:
                outcome = candidate
                break
        jitter = config.processing_jitter_ms * (2.0 * jitter_roll - 1.0)
        latency_s = max(0.0, config.processing_ms + jitter) / 1000.0
        return JobPlan(outcome=outcome, latency_s=latency_s, write_off=write_off_roll < config.write_off_rate)

    # --- job processing -----------------------------------------------------------------------------

    async def _process(
        self, message: Message, plan: JobPlan, cancelled: asyncio.Event, started: float
    ) -> bool:
        """Spend the job's latency, streaming partials if asked; False when a job_cancel stopped it."""
        loop = asyncio.get_running_loop()
        deadline = started + plan.latency_s
        if self.config.stream_partials and message.get("enable_streaming_asr") is True:
            words = _asr_text(message).split()
            offsets = _partial_offsets(plan.latency_s, message.get("partial_update_interval_ms"))
            for index, offset in enumerate(offsets):
                if await _wait_cancelled(cancelled, started + offset - loop.time()):
                    return False
                shown = max(1, math.ceil(len(words) * (index + 1) / (len(offsets) + 1)))
                await self._send_quietly(self.build_asr_partial(message, " ".join(words[:shown]), False))
            if await _wait_cancelled(cancelled, deadline - loop.time()):
                return False
            await self._send_quietly(self.build_asr_partial(message, " ".join(words), True))
            return not cancelled.is_set()
        return not await _wait_cancelled(cancelled, deadline - loop.time())

    async def _refuse(self, message: Message, text: str) -> None:
        # The real node throws before touching the pipeline; its result carries the thrown text.
        self.duplicates_seen += 1
        self.outcomes["duplicate"] += 1
        await self._send_result(self.build_error_result(message, "PROCESSING_ERROR", text, 0))

    def _write_off_target(self, current_job_id: str) -> Message | None:
        """An earlier job of this node that is not in flight and not yet written off; jobs that never got
        a result of their own come first, since those are the ones whose audio the real node absorbs."""
        candidates = [
            job
            for job_id, job in reversed(self._job_history.items())
            if job_id != current_job_id and job_id not in self.active_jobs and job_id not in self._written_off
        ]
        for job in candidates:
            if job["job_id"] in self._unanswered:
                return job
        return candidates[0] if candidates else None

    async def _send_quietly(self, message: Message) -> bool:
        # A result that finds the socket gone is lost, as on the real node; the job timeout decides then.
        try:
            await self.send(message)
        except (ConnectionError, ConnectionClosed):
            logger.info(
                "%s: %s for %s lost: not connected", self.name, message["type"], message.get("job_id")
            )
            return False
        return True

    async def _send_result(self, result: Message) -> bool:
        if not await self._send_quietly(result):
            self.outcomes["undelivered"] += 1
            return False
        self.results_sent += 1
        return True

    # --- connection handling ------------------------------------------------------------------------

    def _connect_url(self) -> str:
        if self.config.token is None or self.config.auth != "query":
            return self.config.url
        separator = "&" if urlsplit(self.config.url).query else "?"
        return f"{self.config.url}{separator}token={quote(self.config.token, safe='.')}"

    def _connect_headers(self) -> dict[str, str]:
        if self.config.token is not None and self.config.auth == "header":
            return {"Authorization": f"Bearer {self.config.token}"}
        return {}

    def _redact(self, text: str) -> str:
        token = self.config.token
        if not token:
            return text
        shown = f"{token.split('.', 1)[0]}.***"
        return text.replace(quote(token, safe="."), shown).replace(token, shown)

    async def _connect_once(self) -> bool:
        """One connection attempt and, if it opens, its whole session. Returns whether it opened."""
        try:
            # No pings, no User-Agent, no proxy, no Origin: the npm `ws` client of the real node sends
            # none of them, and the server must cope with exactly that handshake.
            async with connect(
                self._connect_url(),
                additional_headers=self._connect_headers(),
                user_agent_header=None,
                proxy=None,
                ping_interval=None,
                max_size=self.config.max_frame_bytes,
                open_timeout=self.config.open_timeout_s,
                close_timeout=self.config.close_timeout_s,
            ) as ws:
                await self._session(ws)
                return True
        except InvalidStatus as exc:
            status = exc.response.status_code
            self.handshake_statuses.append(status)
            self.connect_failures += 1
            self.last_connect_error = f"the server refused the connection with HTTP {status}" + (
                " (the token is unknown or revoked)" if status in (401, 403) else ""
            )
            logger.warning("%s: handshake rejected with HTTP %d", self.name, status)
        except InvalidURI as exc:
            # A malformed URL never heals; retrying would only spin.
            self._stopping = True
            self.last_connect_error = f"invalid URL: {self._redact(str(exc))}"
            logger.error("%s: invalid scheduler URL: %s", self.name, self._redact(str(exc)))
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            self.connect_failures += 1
            self.last_connect_error = f"{type(exc).__name__}: {self._redact(str(exc))}"
            logger.warning(
                "%s: connection to %s failed: %s: %s",
                self.name,
                display_url(self.config.url),
                type(exc).__name__,
                self._redact(str(exc)),
            )
        self._notify()
        return False

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        if self._stopping:
            self._ws = None
            return
        self.connections += 1
        self.connected.set()
        self._notify()
        # The id is known only after registering (or from an earlier session): say which, never "as None".
        if self.node_id is None:
            logger.info("%s: connected to %s, registering", self.name, display_url(self.config.url))
        else:
            logger.info("%s: reconnected to %s as %s", self.name, display_url(self.config.url), self.node_id)
        heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.name}")
        try:
            reopening = self.node_id is not None
            if reopening and self.config.reopen_heartbeat == "before_register":
                await self.send_heartbeat()
            await self.send(self.build_register())
            if reopening and self.config.reopen_heartbeat == "after_register":
                await self.send_heartbeat()
            async for raw in ws:
                await self._handle_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat_task
            self._ws = None
            self.connected.clear()
            self.registered.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), self.config.close_timeout_s)
            self.close_codes.append(ws.close_code)
            self._notify()
            logger.info("%s: connection closed with code %s", self.name, ws.close_code)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self.send_heartbeat()
            except (ConnectionClosed, ConnectionError):
                return

    async def _handle_frame(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            logger.warning("%s: ignoring a binary frame of %d bytes", self.name, len(raw))
            return
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            logger.warning("%s: ignoring a frame that is not JSON", self.name)
            return
        if not isinstance(message, dict):
            logger.warning("%s: ignoring a JSON frame that is not an object", self.name)
            return
        self.received.append(message)
        message_type = message.get("type")
        if message_type == "node_register_ack":
            await self._on_register_ack(message)
        elif message_type == "job_assign":
            await self._on_job_assign(message)
        elif message_type == "job_cancel":
            self.job_cancels.append(message)
            self._spawn_hook(self.on_job_cancel(message))
        elif message_type == "error":
            self.errors.append(message)
            logger.warning(
                "%s: scheduler error %s: %s", self.name, message.get("code"), message.get("message")
            )
        elif message_type == "node_status":
            self.statuses.append(message)
            status = message.get("status")
            self.last_status = status if isinstance(status, str) else None
        elif message_type == "node_control":
            self.controls.append(message)
            if message.get("command") == "drain":
                self.draining = True
            elif message.get("command") == "undrain":
                self.draining = False
        else:
            logger.info("%s: ignoring unknown message type %r", self.name, message_type)
        self._notify()

    async def _on_register_ack(self, message: Message) -> None:
        node_id = message.get("node_id")
        if not isinstance(node_id, str):
            logger.warning("%s: node_register_ack without a node_id", self.name)
            return
        self.node_id = node_id
        self.register_acks.append(message)
        self.registered.set()
        self._notify()
        logger.info("%s: registered as %s", self.name, node_id)
        await self.send_heartbeat()

    async def _on_job_assign(self, message: Message) -> None:
        self.job_assigns.append(message)
        if self.config.send_ack and self.node_id is not None:
            ack: Message = {
                "type": "job_ack",
                "job_id": message.get("job_id"),
                "attempt_id": message.get("attempt_id"),
                "node_id": self.node_id,
            }
            for optional in ("session_id", "trace_id"):
                if optional in message:
                    ack[optional] = message[optional]
            await self.send(ack)
        self._spawn_hook(self.on_job_assign(message))

    def _spawn_hook(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Hooks run beside the receive loop so a slow job never delays a job_cancel or the next assign.
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s: job hook failed", self.name, exc_info=exc)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _elapsed_ms(loop: asyncio.AbstractEventLoop, started: float) -> int:
    return max(0, round((loop.time() - started) * 1000))


async def _wait_cancelled(cancelled: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s` unless cancelled first; whether the job was cancelled."""
    if cancelled.is_set():
        return True
    if delay_s <= 0:
        # Still yield once, so a job with zero latency lets other frames through like any other.
        await asyncio.sleep(0)
        return cancelled.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancelled.wait(), delay_s)
    return cancelled.is_set()


