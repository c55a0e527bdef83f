"""Each cutting rule on a real server: what the node receives in `job_assign` when the web client streams."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient, opus_chunk

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_pause_without_chunks_cuts_the_utterance_with_the_timeout_padding(server, node_token, sessions_key):
    node, _ = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.chunk()
    await client.chunk()
    started = asyncio.get_running_loop().time()
    assign = await node.expect("job_assign", timeout=3)
    assert asyncio.get_running_loop().time() - started >= 0.3, "SESSIONS_PAUSE_MS is 400 on this server"
    assert (assign["utterance_index"], assign["padding_ms"]) == (0, 220)
    assert assign["is_timeout_triggered"] is True and assign["is_manual_cut"] is False
    assert len(base64.b64decode(assign["audio"])) == 2 * len(base64.b64decode(opus_chunk()))
    await client.close()
    await node.close()


async def test_ten_seconds_of_audio_are_cut_without_waiting_for_is_final(start_session_server, node_token, sessions_key):
    server = start_session_server(SESSIONS_MAX_DURATION_MS="1000", SESSIONS_PAUSE_MS="5000")
    node, _ = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    for _ in range(4):  # 4 x 260 ms
        await client.chunk()
    assign = await node.expect("job_assign", timeout=2)
    assert assign["is_max_duration_triggered"] is True and assign["padding_ms"] == 220
    await client.close()
    await node.close()


async def test_a_buffer_above_the_size_limit_is_cut_with_no_padding(start_session_server, node_token, sessions_key):
    server = start_session_server(SESSIONS_MAX_UTTERANCE_BYTES="2000", SESSIONS_PAUSE_MS="5000")
    node, _ = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    for _ in range(3):  # 806 bytes each
        await client.chunk()
    assign = await node.expect("job_assign", timeout=2)
    assert assign["padding_ms"] == 0
    assert len(base64.b64decode(assign["audio"])) == 3 * 806
    await client.close()
    await node.close()


async def test_session_close_cuts_the_buffer_sends_its_result_and_then_the_ack(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.chunk()
    await client.send({"type": "session_close", "session_id": client.session_id, "reason": "user_left"})
    assign = await node.expect("job_assign")
    assert assign["padding_ms"] == 220
    await node.send(result_for(assign, node_id))
    await client.expect("session_close_ack")
    kinds = [f["type"] for f in client.frames]
    assert kinds.index("translation_result") < kinds.index("session_close_ack")
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    assert (await client.expect("error"))["code"] == "INVALID_SESSION", "the closed session takes no more messages"
    await client.close()
    await node.close()


async def test_a_failed_job_does_not_stop_the_session_from_cutting_later_utterances(start_session_server, node_token, sessions_key):
    server = start_session_server(JOB_PENDING_TIMEOUT_S="0.3")
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak(chunks=1)
    missing = await client.expect("missing_result")
    assert (missing["utterance_index"], missing["reason"]) == (0, "POOL_EMPTY")
    node, node_id = await ready_node(server, node_token)
    await client.speak(chunks=1)
    assign = await node.expect("job_assign")
    assert assign["utterance_index"] == 1
    await node.send(result_for(assign, node_id))
    assert (await client.expect("translation_result"))["utterance_index"] == 1
    await client.close()
    await node.close()
