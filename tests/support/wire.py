"""A raw node connection for protocol tests: exact frames in, exact frames out, no client logic."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

# The reference node's messages (lingua1 study, section 1.3), as the Electron client sends them.
REAL_NODE_REGISTER: dict[str, Any] = {
    "type": "node_register",
    "node_id": None,
    "version": "2.0.0",
    "capability_schema_version": "2.0",
    "platform": "windows",
    "hardware": {"cpu_cores": 16, "memory_gb": 64, "gpus": [{"name": "RTX 4090", "memory_gb": 24}]},
    "installed_models": [],
    "installed_services": [
        {"service_id": "faster-whisper-vad", "type": "asr", "device": "gpu", "status": "running"},
        {"service_id": "nmt-m2m100", "type": "nmt", "device": "gpu", "status": "running"},
        {"service_id": "piper-tts", "type": "tts", "device": "gpu", "status": "running"},
        {"service_id": "semantic-repair-en-zh", "type": "semantic", "device": "gpu", "status": "running"},
    ],
    "capability_by_type": [
        {"type": "asr", "ready": True, "devices": ["gpu"]},
        {"type": "nmt", "ready": True, "devices": ["gpu"]},
        {"type": "tts", "ready": True, "devices": ["gpu"]},
        {"type": "semantic", "ready": True, "devices": ["gpu"]},
    ],
    "features_supported": {},
    "accept_public_jobs": True,
    "language_capabilities": {
        "asr_languages": ["en", "zh"],
        "semantic_languages": ["en", "zh"],
        "tts_languages": ["en", "zh"],
        "semantic_core_ready": True,
    },
}


def real_node_heartbeat(node_id: str, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "node_heartbeat",
        "node_id": node_id,
        "timestamp": int(time.time() * 1000),
        "resource_usage": {
            "cpu_percent": 23.5,
            "gpu_percent": 61.0,
            "gpu_mem_percent": 48.2,
            "mem_percent": 55.1,
            "running_jobs": 1,
            "gpu_queue_length": 2,
        },
        "installed_services": REAL_NODE_REGISTER["installed_services"],
        "capability_by_type": REAL_NODE_REGISTER["capability_by_type"],
        "processing_metrics": {"serviceEfficiencies": {"faster-whisper-vad": 12.4, "nmt-m2m100": 380.0}},
        "language_capabilities": REAL_NODE_REGISTER["language_capabilities"],
    }
    message.update(overrides)
    return message


def register_message(**overrides: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(REAL_NODE_REGISTER)), **overrides}


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
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
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
