"""Simulated lingua web clients for demos and load (`simulate_sessions`, `make bench`).

Each client speaks the web client's frames: `session_init` as it sends it, Opus "Plan A" chunks of 13
packets (20 ms each, 24 kbps) every 256 ms while "speaking", `is_final` with an empty payload to end an
utterance, `client_heartbeat` every 30 s. It records, per utterance, when `is_final` left and when its
`translation_result` or `missing_result` came back.

Real time (`realtime=True`): chunks at the pace of speech, a silence between utterances, results not waited
for (a person keeps talking). As fast as possible (`realtime=False`): chunks back to back, and each
utterance waits for its result before the next (a closed loop, for throughput).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets

from sessions.audio import PACKET_MS, plan_a

log = logging.getLogger(__name__)

PACKETS_PER_CHUNK = 13
CHUNK_INTERVAL_S = 0.256
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class ClientConfig:
    # /ws/session, with `?token=<key>` as the web client sends it.
    url: str
    src_lang: str = "zh"
    tgt_lang: str = "en"
    chunks_per_utterance: int = 4
    realtime: bool = True
    silence_s: float = 1.0
    packet_bytes: int = 60
    result_timeout_s: float = 30.0
    open_timeout_s: float = 30.0


@dataclass
class UtteranceRecord:
    index: int
    final_sent_at: float  # time.time()
    result_at: float | None = None
    kind: str = ""
    reason: str = ""

    @property
    def latency_s(self) -> float | None:
        return None if self.result_at is None else self.result_at - self.final_sent_at


@dataclass
class ClientOutcome:
    records: list[UtteranceRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connected: bool = False


def _chunk_payload(packet_bytes: int) -> str:
    # Random bytes: the scheduler never decodes Opus, and equal payloads would compress unrealistically.
    return base64.b64encode(plan_a([os.urandom(packet_bytes) for _ in range(PACKETS_PER_CHUNK)])).decode()


class SimulatedClient:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.outcome = ClientOutcome()
        self.pending: dict[int, UtteranceRecord] = {}
        self.answered = asyncio.Event()
        self.session_id = ""
        self.seq = 0

    async def run(self, stop: asyncio.Event, utterances: int | None = None) -> ClientOutcome:
        """Talk until `stop` is set or `utterances` were answered; the socket is closed either way."""
        try:
            ws = await websockets.connect(self.config.url, max_size=None, open_timeout=self.config.open_timeout_s)
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            self.outcome.errors.append(f"connect: {type(exc).__name__}: {exc}"[:200])
            return self.outcome
        reader = asyncio.ensure_future(self._read(ws))
        try:
            await ws.send(json.dumps({
                "type": "session_init", "client_version": "web-client-v1.0", "platform": "web",
                "src_lang": self.config.src_lang, "tgt_lang": self.config.tgt_lang, "dialect": None, "features": {},
                "pairing_code": None, "mode": "one_way", "trace_id": str(uuid.uuid4()), "tenant_id": None,
            }))  # fmt: skip
            while not self.session_id:
                await asyncio.wait_for(asyncio.shield(self.answered.wait()), self.config.open_timeout_s)
                self.answered.clear()
                if reader.done():
                    return self.outcome
            self.outcome.connected = True
            await self._talk(ws, stop, utterances)
        except (websockets.ConnectionClosed, TimeoutError, OSError) as exc:
            self.outcome.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        return self.outcome

    async def _talk(self, ws: Any, stop: asyncio.Event, utterances: int | None) -> None:
        payload = _chunk_payload(self.config.packet_bytes)
        last_heartbeat = time.monotonic()
        index = 0
        while not stop.is_set() and (utterances is None or index < utterances):
            for _ in range(self.config.chunks_per_utterance):
                await self._send_chunk(ws, payload, False)
                if self.config.realtime and await _stopped(stop, CHUNK_INTERVAL_S):
                    return
            record = UtteranceRecord(index, time.time())
            self.pending[index] = record
            self.outcome.records.append(record)
            await self._send_chunk(ws, "", True)
            index += 1
            if self.config.realtime:
                if time.monotonic() - last_heartbeat >= HEARTBEAT_S:
                    await ws.send(json.dumps({"type": "client_heartbeat", "session_id": self.session_id, "timestamp": int(time.time() * 1000)}))
                    last_heartbeat = time.monotonic()
                if await _stopped(stop, self.config.silence_s):
                    return
            else:
                await self._until_answered(record, stop)
        if utterances is not None:
            for record in list(self.pending.values()):
                await self._until_answered(record, stop)

    async def _until_answered(self, record: UtteranceRecord, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + self.config.result_timeout_s
        while record.result_at is None and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.outcome.errors.append(f"no result for utterance {record.index}")
                return
            self.answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), min(remaining, 0.5))

    async def _send_chunk(self, ws: Any, payload: str, is_final: bool) -> None:
        self.seq += 1
        await ws.send(json.dumps({"type": "audio_chunk", "session_id": self.session_id, "seq": self.seq, "is_final": is_final, "payload": payload}))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "session_init_ack":
                    self.session_id = frame["session_id"]
                elif kind in ("translation_result", "missing_result"):
                    record = self.pending.pop(frame.get("utterance_index"), None)
                    if record is not None:
                        record.result_at, record.kind, record.reason = time.time(), kind, frame.get("reason", "")
                elif kind == "error":
                    self.outcome.errors.append(f"error {frame.get('code')}: {frame.get('message')}"[:200])
                self.answered.set()
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            if code not in (1000, None) or not self.outcome.connected:
                self.outcome.errors.append(f"closed by the scheduler ({code})")
        finally:
            self.answered.set()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; whether it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_clients(
    config: ClientConfig, count: int, stop: asyncio.Event, *, utterances: int | None = None, ramp_s: float = 0.0
) -> list[ClientOutcome]:
    """`count` clients at once (their starts spread over `ramp_s`), until `stop` or `utterances` each."""

    async def one(i: int) -> ClientOutcome:
        if ramp_s and await _stopped(stop, ramp_s * i / count):
            return ClientOutcome()
        return await SimulatedClient(config).run(stop, utterances)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(outcomes: list[ClientOutcome], since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
    """Counts and is_final -> result latencies (ms) of the utterances whose is_final left in [since, until)."""
    records = [r for o in outcomes for r in o.records if since <= r.final_sent_at < until]
    answered = [r for r in records if r.result_at is not None]
    latencies = [r.latency_s * 1000 for r in answered if r.kind == "translation_result" and r.latency_s is not None]
    missing: dict[str, int] = {}
    for r in answered:
        if r.kind == "missing_result":
            missing[r.reason] = missing.get(r.reason, 0) + 1
    return {
        "sessions": len(outcomes),
        "connected": sum(o.connected for o in outcomes),
        "utterances": len(records),
        "translated": len(latencies),
        "missing": missing,
        "unanswered": len(records) - len(answered),
        "errors": sum(len(o.errors) for o in outcomes),
        "first_errors": [e for o in outcomes for e in o.errors][:5],
        "latency_ms": {name: None if (v := percentile(latencies, q)) is None else round(v, 1)
                       for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},  # fmt: skip
    }


def utterance_audio_ms(config: ClientConfig) -> int:
    return config.chunks_per_utterance * PACKETS_PER_CHUNK * PACKET_MS
