"""Every client message type and the protocol faults, with the clients' exact frames (reference §2)."""

from __future__ import annotations

import json

import pytest

from tests.sessions.support import SessionClient, web_session_init

pytestmark = pytest.mark.django_db(transaction=True)


async def test_client_heartbeat_is_answered_with_server_heartbeat(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1_760_000_000_000})
    beat = await client.expect("server_heartbeat")
    assert beat["session_id"] == client.session_id and isinstance(beat["timestamp"], int)
    await client.close()


async def test_tts_started_and_tts_play_ended_are_accepted_without_an_answer(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    ack = await client.init()
    common = {"session_id": client.session_id, "trace_id": ack["trace_id"], "group_id": f"group_{client.session_id}_0"}
    await client.send({"type": "tts_started", **common, "ts_start_ms": 1_760_000_000_000})
    await client.send({"type": "tts_play_ended", **common, "ts_end_ms": 1_760_000_001_000})
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")
    assert [f["type"] for f in client.frames] == ["session_init_ack", "server_heartbeat"]
    await client.close()


async def test_room_and_webrtc_messages_get_one_unsupported_feature_refusal_per_socket(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.send({"type": "room_create", "client_ts": 1})
    refusal = await client.expect("error")
    assert refusal["code"] == "UNSUPPORTED_FEATURE" and refusal["details"] == {"type": "room_create"}
    for _ in range(3):
        await client.send({"type": "webrtc_ice", "to": "s-00000000", "candidate": {}})
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")
    assert [f["type"] for f in client.frames].count("error") == 1
    await client.close()


async def test_an_unknown_type_a_missing_field_and_bad_json_get_invalid_message_and_the_session_lives_on(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.send({"type": "translate_please", "session_id": client.session_id})
    assert (await client.expect("error"))["code"] == "INVALID_MESSAGE"
    await client.send({"type": "audio_chunk", "session_id": client.session_id, "seq": 1})
    missing = await client.expect("error")
    assert missing["code"] == "INVALID_MESSAGE"
    assert [f["field"] for f in missing["details"]["fields"]] == ["is_final"]
    await client.send("{not json")
    assert (await client.expect("error"))["code"] == "INVALID_MESSAGE"
    await client.send(b"\x01\x02binary")  # the binary layout of the web client: ignored, as the old server did
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1})
    await client.expect("server_heartbeat")
    assert [f["type"] for f in client.frames].count("error") == 3
    await client.close()


async def test_extra_fields_are_ignored(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init(web_session_init(some_future_field={"x": 1}))
    await client.send({"type": "client_heartbeat", "session_id": client.session_id, "timestamp": 1, "extra": True})
    await client.expect("server_heartbeat")
    await client.close()


async def test_messages_before_session_init_or_for_another_session_get_invalid_session(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.send({"type": "audio_chunk", "session_id": "s-1A2B3C4D", "seq": 17, "is_final": False, "payload": "PQB4"})
    assert (await client.expect("error"))["code"] == "INVALID_SESSION"
    await client.init()
    await client.send({"type": "client_heartbeat", "session_id": "s-1A2B3C4D", "timestamp": 1})
    assert (await client.expect("error"))["code"] == "INVALID_SESSION"
    await client.close()


async def test_a_second_session_init_on_the_same_socket_starts_a_new_session_and_ends_the_first(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    first = (await client.init())["session_id"]
    second = (await client.init())["session_id"]
    assert first != second
    await client.send({"type": "client_heartbeat", "session_id": first, "timestamp": 1})
    assert (await client.expect("error"))["code"] == "INVALID_SESSION"
    await client.send({"type": "client_heartbeat", "session_id": second, "timestamp": 1})
    await client.expect("server_heartbeat")
    await client.close()


async def test_session_init_with_an_unknown_language_is_refused_naming_the_field(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.send(web_session_init(tgt_lang="klingon"))
    refusal = await client.expect("error")
    assert (refusal["code"], refusal["details"]["field"]) == ("INVALID_MESSAGE", "tgt_lang")
    await client.send(json.dumps(web_session_init()))
    await client.expect("session_init_ack")
    await client.close()


async def test_the_ack_never_asks_for_binary_frames_and_negotiates_opus_16k_mono(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    ack = await client.init()
    assert ack["use_binary_frame"] is False
    assert (ack["negotiated_codec"], ack["negotiated_sample_rate"], ack["negotiated_channel_count"]) == ("opus", 16000, 1)
    assert ack["message"] and ack["protocol_version"] == "1.0"
    await client.close()
