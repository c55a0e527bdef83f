"""Limits with clear refusals: sessions per key, audio bytes per second, message size."""

from __future__ import annotations

import asyncio

import pytest

from core.redis import get_redis, keys
from tests.sessions.support import SessionClient, opus_chunk

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_key_past_its_session_limit_is_told_and_closed_and_a_freed_slot_can_be_taken(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_MAX_PER_KEY="2")
    first = await SessionClient.connect(server.ws_url, sessions_key)
    await first.init()
    second = await SessionClient.connect(server.ws_url, sessions_key)
    await second.init()
    third = await SessionClient.connect(server.ws_url, sessions_key)
    await third.send({"type": "session_init", "client_version": "web-client-v1.0", "platform": "web", "src_lang": "zh", "tgt_lang": "en"})
    refusal = await third.expect("error")
    assert (refusal["code"], refusal["details"]["limit"]) == ("TOO_MANY_SESSIONS", 2)
    assert await third.closed_with() == 4429
    await first.close()
    await _until_held(sessions_key, 1)
    fourth = await SessionClient.connect(server.ws_url, sessions_key)
    await fourth.init()
    await second.close()
    await fourth.close()


async def _until_held(key: str, count: int) -> None:
    """The server frees a closed socket's slot on its own time: wait (bounded) until the key holds `count`."""
    for _ in range(100):
        if await get_redis().zcard(keys().key_sessions(key.partition(".")[0])) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the key never held {count} sessions")


async def test_audio_above_the_rate_limit_is_dropped_with_one_rate_limited_error(start_session_server, sessions_key):
    # 806-byte chunks against 1,024 bytes a second and a burst of 2,048: the third chunk at once is too much.
    server = start_session_server(SESSIONS_MAX_AUDIO_BYTES_PER_S="1024", SESSIONS_MAX_UTTERANCE_BYTES="2048")
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    for _ in range(5):
        await client.chunk(opus_chunk())
    refusal = await client.expect("error")
    assert refusal["code"] == "RATE_LIMITED" and refusal["details"]["limit_bytes_per_s"] == 1024
    assert refusal["details"]["retry_after_ms"] > 0
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")
    assert [f["type"] for f in client.frames].count("error") == 1, "at most one notice every few seconds"
    await client.close()


async def test_a_message_above_the_size_limit_is_refused_and_the_socket_stays_open(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_MAX_MESSAGE_BYTES="4096")
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.chunk("A" * 8000)
    refusal = await client.expect("error")
    assert (refusal["code"], refusal["details"]["limit"]) == ("MESSAGE_TOO_LARGE", 4096)
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")
    await client.close()
