"""Fixtures of the REST API tests: keys and tokens made in code, an HTTP node speaking the node link through
Django's async test client, and a real HTTP server standing in for the node's dispatch URL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from prometheus_client import REGISTRY

from access.models import ApiKey
from nodes.models import NodeToken
from tests import factories

LINK = "/api/v1/node-link"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


class KeyClient(AsyncClient):
    """Django's async test client sending one API key with every request (the client's own `headers=`
    default does not reach ASGI requests under their HTTP names)."""

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_headers = bearer(key)

    def generic(
        self, method: str, path: str, *args: Any, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        return super().generic(method, path, *args, headers={**self.key_headers, **(headers or {})}, **kwargs)


@pytest.fixture
def issue_key(transactional_db) -> Callable[..., Awaitable[str]]:
    """Issue an API key with the given scopes; returns the plaintext `<id>.<secret>`."""

    async def issue(*scopes: str, expires_at: datetime | None = None) -> str:
        return (await database_sync_to_async(ApiKey.issue)("test key", list(scopes), expires_at=expires_at))[1]

    return issue


@pytest.fixture
def node_token(transactional_db) -> str:
    return NodeToken.issue("test node")[1]


class DispatchReceiver:
    """A real HTTP server at a node's dispatch URL: records every frame the scheduler POSTs to it."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        frames = self.frames

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                frames.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dispatch"

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for frame in self.frames:
                if predicate(frame):
                    return frame
            await asyncio.sleep(0.02)
        raise AssertionError(f"no matching frame within {timeout} s; got {self.frames}")


@pytest.fixture
def receiver() -> Iterator[DispatchReceiver]:
    receiver = DispatchReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@dataclass
class HttpNode:
    """A node on the HTTP link, driven step by step by a test."""

    client: AsyncClient
    token: str | None
    dispatch_url: str
    node_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token) if self.token else {}

    async def register(self, **overrides: Any) -> Any:
        body = factories.register_message(
            **{"dispatch_url": self.dispatch_url, "node_id": self.node_id, **overrides}
        )
        response = await self.client.post(
            f"{LINK}/register", body, content_type="application/json", headers=self.headers
        )
        if response.status_code == 200:
            self.node_id = response.json()["node_id"]
        return response

    async def heartbeat(self, **overrides: Any) -> Any:
        assert self.node_id is not None
        return await self.send(factories.heartbeat_message(self.node_id, **overrides))

    async def send(self, message: dict[str, Any], node_id: str | None = None) -> Any:
        return await self.client.post(
            f"{LINK}/{node_id or self.node_id}/messages",
            message,
            content_type="application/json",
            headers=self.headers,
        )

    async def become_ready(self) -> str:
        assert (await self.register()).status_code == 200
        response = await self.heartbeat()
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "ready"
        assert self.node_id is not None
        return self.node_id


@pytest.fixture
def http_node(node_token: str, receiver: DispatchReceiver) -> HttpNode:
    return HttpNode(AsyncClient(), node_token, receiver.url)


async def metric(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample (collectors of live state read Redis synchronously)."""
    return await database_sync_to_async(REGISTRY.get_sample_value)(name, labels) or 0.0
