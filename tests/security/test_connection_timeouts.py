"""Connections that hold a file descriptor without doing their part are closed: silent TCP connections and
slow request heads by the web server (WEB_HEADER_TIMEOUT_S), node sockets that never register
(NODE_REGISTER_TIMEOUT_S) and registered ones gone silent (NODE_IDLE_TIMEOUT_S) by the consumer, with 4408.
A node that heartbeats is never closed."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.factories import heartbeat_message
from tests.support.metrics import scrape_url
from tests.support.processes import AsgiServer
from tests.support.wire import Wire

pytestmark = pytest.mark.django_db(transaction=True)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (reads EOF or a reset)."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connect(server: AsgiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


async def test_silent_and_slow_header_connections_are_closed_by_the_web_server(start_server):
    # The head deadline is uvicorn's protocol class (supervisor/http_protocol.py); daphne has none and is
    # documented to need a proxy with one in front (docs/security.md).
    server = start_server(server="uvicorn", WEB_HEADER_TIMEOUT_S="1")
    silent = [connect(server) for _ in range(20)]
    slow = connect(server)
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    # A byte now and then keeps uvicorn's own keep-alive timer from ever starting; the head deadline holds.
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 6 and not closed:
        try:
            slow.sendall(b"X")
        except OSError:
            closed = True
        await asyncio.sleep(0.2)
    assert closed or closed_by_server(slow, 1)
    assert all(closed_by_server(sock, 5) for sock in silent)
    assert scrape_url(server.url)[("scheduler_web_connections_timed_out_total", ())] >= 21
    # A request that completes its head in time is answered.
    prompt = connect(server)
    prompt.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert prompt.recv(1024).startswith(b"HTTP/1.1 200")
    for sock in (*silent, slow, prompt):
        sock.close()


async def test_an_authenticated_socket_that_never_registers_is_closed_with_4408(start_server, node_token):
    server = start_server(NODE_REGISTER_TIMEOUT_S="1")
    wire = await Wire.connect(server.ws_url, node_token)
    assert await wire.closed_with(timeout=10) == 4408
    samples = scrape_url(server.url)
    assert samples[("scheduler_node_sockets_timed_out_total", (("reason", "register"),))] == 1


async def test_a_registered_socket_gone_silent_is_closed_and_a_heartbeating_one_is_not(start_server, node_token):
    # Heartbeats every 0.3 s against an idle limit of 2 s; the sweep would mark a silent node offline earlier,
    # which is not what this is about.
    server = start_server(NODE_IDLE_TIMEOUT_S="2", NODE_HEARTBEAT_TIMEOUT_S="60")
    silent = await Wire.connect(server.ws_url, node_token)
    await silent.register()
    talking = await Wire.connect(server.ws_url, node_token)
    node_id = (await talking.register())["node_id"]
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        await talking.send(heartbeat_message(node_id))
        await asyncio.sleep(0.3)
    assert await silent.closed_with(timeout=5) == 4408
    await asyncio.wait_for(await talking.ws.ping(), 5)  # still open
    await talking.expect("node_status")
    assert not [f for f in talking.frames if f["type"] == "error"]
    await talking.close()
