"""A raw node connection for protocol tests: exact frames in, exact frames out, no client logic."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.factories import register_message


class Wire:
    """One node socket. `frames` keeps everything the scheduler sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._cursor = 0

    @classmethod
    async def connect(cls, ws_url: str, token: str | None, *, header: bool = False) -> Wire:
        url = f"{ws_url}/ws/node"
        headers = {}
        if token and header:
            headers["Authorization"] = f"Bearer {token}"
        elif token:
            url = f"{url}?token={token}"
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

    async def register(self, **overrides: Any) -> dict[str, Any]:
        await self.send(register_message(**overrides))
        return await self.expect("node_register_ack")

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket; its close code."""
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), timeout)
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()
