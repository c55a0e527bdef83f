"""A raw session client for protocol tests: the lingua clients' exact frames in, exact frames out."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from sessions.audio import plan_a


def opus_chunk(packets: int = 13, packet_bytes: int = 60, fill: int = 0x41) -> str:
    """One ~256 ms chunk as the web client sends it: Opus Plan A, base64 (13 packets of 20 ms)."""
    return base64.b64encode(plan_a([bytes([fill]) * packet_bytes] * packets)).decode()


def web_session_init(**overrides: Any) -> dict[str, Any]:
    """`session_init` exactly as the web client sends it in one-way mode (reference §2)."""
    message = {
        "type": "session_init", "client_version": "web-client-v1.0", "platform": "web", "src_lang": "zh",
        "tgt_lang": "en", "dialect": None, "features": {}, "pairing_code": None, "mode": "one_way",
        "trace_id": str(uuid.uuid4()), "tenant_id": None,
    }  # fmt: skip
    message.update(overrides)
    return message


def two_way_session_init(lang_a: str = "zh", lang_b: str = "en") -> dict[str, Any]:
    return web_session_init(src_lang="auto", tgt_lang=lang_b, mode="two_way_auto", lang_a=lang_a, lang_b=lang_b, auto_langs=[lang_a, lang_b])


class SessionClient:
    """One session socket. `frames` keeps everything the scheduler sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._cursor = 0
        self.session_id = ""
        self.seq = 0

    @classmethod
    async def connect(cls, ws_url: str, key: str | None, *, header: bool = False, origin: str | None = None) -> SessionClient:
        url = f"{ws_url}/ws/session"
        headers = {}
        if key and header:
            headers["Authorization"] = f"Bearer {key}"
        elif key:
            url = f"{url}?token={key}"
        if origin:
            headers["Origin"] = origin
        ws = await websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=5)
        return cls(ws)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def expect(self, frame_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of `frame_type` (earlier frames of other types are kept in `frames`)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(self._cursor, len(self.frames)):
                if self.frames[index]["type"] == frame_type:
                    self._cursor = index + 1
                    return self.frames[index]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {frame_type} frame within {timeout} s; got {self.frames}")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                raise AssertionError(f"no {frame_type} frame within {timeout} s; got {self.frames}") from None
            self.frames.append(json.loads(raw))

    async def quiet_for(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame that arrives within `seconds` (none expected, usually)."""
        arrived = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                break
            frame = json.loads(raw)
            self.frames.append(frame)
            arrived.append(frame)
        return arrived

    async def init(self, message: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send(message or web_session_init())
        ack = await self.expect("session_init_ack")
        self.session_id = ack["session_id"]
        return ack

    async def chunk(self, payload: str | None = None, *, is_final: bool = False) -> None:
        """One `audio_chunk` as the web client sends it; `is_final` with the empty payload it uses."""
        self.seq += 1
        message = {"type": "audio_chunk", "session_id": self.session_id, "seq": self.seq, "is_final": is_final,
                   "payload": "" if is_final and payload is None else (payload if payload is not None else opus_chunk())}  # fmt: skip
        await self.send(message)

    async def speak(self, chunks: int = 3) -> None:
        """An utterance ended by the client: `chunks` chunks, then `is_final` with an empty payload."""
        for _ in range(chunks):
            await self.chunk()
        await self.chunk(is_final=True)

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), timeout)
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()
