"""The chaos run's session clients: lingua web clients on `/ws/session`, streaming utterances through both
web processes while the faults happen, writing the sessions' half of the history (`sessions.jsonl`).

Each client speaks the web client's frames (`sessions/simulator.py`): `session_init`, Opus "Plan A" chunks,
`is_final` with an empty payload to end an utterance. The stack cuts only on `is_final` (its pause cut is set
beyond any fault, `chaos/scenario.py`), so the k-th `is_final` of a session is that session's utterance k, and
the checker can match every utterance the client sent to the final frame the server owes it.

Written per event: `s_open` (a session acknowledged), `s_refused` (a socket or `session_init` refused),
`s_utt` (an `is_final` sent: utterance k of a session), `s_frame` (every `translation_result`,
`missing_result`, `error` and `session_close_ack` received), `s_lost` (the socket closed under the client).
A client whose socket is lost opens a new session on the other web process, as the web client reconnects.
At the end each client stops talking, waits for the results it is owed, then sends `session_close`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from typing import Any

import websockets

from chaos.client import JsonLines
from sessions.audio import plan_a

CHUNKS_PER_UTTERANCE = 3
CHUNK_INTERVAL_S = 0.1
SILENCE_S = 2.0
OPEN_TIMEOUT_S = 10.0
RECONNECT_S = 1.0
FINALS = ("translation_result", "missing_result")


def chunk_payload() -> str:
    # 13 packets of 20 ms, random bytes: the scheduler never decodes Opus.
    return base64.b64encode(plan_a([os.urandom(60) for _ in range(13)])).decode()


class SessionChaosClients:
    def __init__(self, ws_urls: list[str], api_key: str, history_path: Any, count: int, follow_s: float) -> None:
        self.ws_urls = ws_urls
        self.api_key = api_key
        self.log = JsonLines(history_path)
        self.count = count
        self.follow_s = follow_s
        self.sent = 0
        self.finals = 0

    async def run(self, duration_s: float) -> None:
        stop_at = time.monotonic() + duration_s
        await asyncio.gather(*(self.client(number, stop_at) for number in range(self.count)))

    async def client(self, number: int, stop_at: float) -> None:
        turn = number
        while time.monotonic() < stop_at:
            url = f"{self.ws_urls[turn % len(self.ws_urls)]}/ws/session?token={self.api_key}"
            turn += 1
            if not await self.one_socket(number, url, stop_at):
                await asyncio.sleep(RECONNECT_S)

    async def one_socket(self, number: int, url: str, stop_at: float) -> bool:
        """One socket and the session on it, until the load is over or the socket is lost; whether a session
        was opened."""
        server = url.split("/ws/")[0]
        try:
            ws = await websockets.connect(url, max_size=None, open_timeout=OPEN_TIMEOUT_S)
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            self.log.write("s_refused", client=number, server=server, why=f"connect: {type(exc).__name__}")
            return False
        state: dict[str, Any] = {"session": "", "owed": set(), "acked": asyncio.Event(), "closed_ack": asyncio.Event()}
        reader = asyncio.ensure_future(self.read(ws, number, server, state))
        state["reader"] = reader
        try:
            await ws.send(json.dumps({
                "type": "session_init", "client_version": "web-client-v1.0", "platform": "web", "src_lang": "zh",
                "tgt_lang": "en", "dialect": None, "features": {}, "pairing_code": None, "mode": "one_way",
                "trace_id": str(uuid.uuid4()), "tenant_id": None,
            }))  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state["acked"].wait(), OPEN_TIMEOUT_S)
            if not state["session"]:
                if not reader.done():
                    self.log.write("s_refused", client=number, server=server, why="no session_init_ack")
                return False
            await self.talk(ws, state, stop_at)
            if reader.done():
                return True
            # The load is over: wait for every result still owed, then close the session as the client does.
            deadline = time.monotonic() + self.follow_s
            while state["owed"] and not reader.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "session_close", "session_id": state["session"], "reason": "chaos run over"}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state["closed_ack"].wait(), 30)
            return True
        except (websockets.ConnectionClosed, OSError):
            return bool(state["session"])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(reader, 5)

    async def talk(self, ws: Any, state: dict[str, Any], stop_at: float) -> None:
        session = state["session"]
        seq = 0
        index = 0
        reader_alive = state["reader"]
        while time.monotonic() < stop_at and not reader_alive.done():
            for _ in range(CHUNKS_PER_UTTERANCE):
                seq += 1
                await ws.send(json.dumps({"type": "audio_chunk", "session_id": session, "seq": seq, "is_final": False, "payload": chunk_payload()}))
                await asyncio.sleep(CHUNK_INTERVAL_S)
            seq += 1
            state["owed"].add(index)
            self.log.write("s_utt", session=session, i=index, seq=seq)
            self.sent += 1
            await ws.send(json.dumps({"type": "audio_chunk", "session_id": session, "seq": seq, "is_final": True, "payload": ""}))
            index += 1
            await asyncio.sleep(SILENCE_S)

    async def read(self, ws: Any, number: int, server: str, state: dict[str, Any]) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "session_init_ack":
                    state["session"] = frame["session_id"]
                    self.log.write("s_open", client=number, session=frame["session_id"], server=server)
                    state["acked"].set()
                elif kind in (*FINALS, "error", "session_close_ack"):
                    index = frame.get("utterance_index")
                    self.log.write(
                        "s_frame", session=state["session"], kind=kind, i=index, reason=frame.get("reason") or frame.get("code") or "",
                        job=frame.get("job_id"),
                    )  # fmt: skip
                    if kind in FINALS:
                        self.finals += 1
                        state["owed"].discard(index)
                    elif kind == "session_close_ack":
                        state["closed_ack"].set()
                    elif not state["session"]:
                        state["acked"].set()  # session_init refused (e.g. DEPENDENCY_DOWN)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            if not state["closed_ack"].is_set():
                self.log.write("s_lost", session=state["session"], server=server, code=code, owed=sorted(state["owed"]))
        finally:
            state["acked"].set()


def run_sessions_in_thread(clients: SessionChaosClients, duration_s: float) -> Any:
    import threading

    thread = threading.Thread(target=lambda: asyncio.run(clients.run(duration_s)), name="chaos-sessions", daemon=True)
    thread.start()
    return thread
