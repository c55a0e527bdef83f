"""One-shot `utterance` messages (the mobile app, the API gateway): every index is dispatched, not only 0."""

from __future__ import annotations

import base64

import pytest

from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient

pytestmark = pytest.mark.django_db(transaction=True)

PCM = base64.b64encode(b"\x01\x00" * 3200).decode()  # 200 ms of PCM16 at 16 kHz, as the mobile app sends


def utterance(session_id: str, index: int, audio: str = PCM, **overrides) -> dict:
    message = {
        "type": "utterance", "session_id": session_id, "utterance_index": index, "manual_cut": True,
        "src_lang": "zh", "tgt_lang": "en", "audio": audio, "audio_format": "pcm16", "sample_rate": 16000,
    }  # fmt: skip
    message.update(overrides)
    return message


async def test_every_one_shot_utterance_becomes_a_job_with_the_clients_index(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token, max_concurrent_jobs=8)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    for index in range(3):
        await client.send(utterance(client.session_id, index))
    assigns = [await node.expect("job_assign") for _ in range(3)]
    assert sorted(a["utterance_index"] for a in assigns) == [0, 1, 2]
    assert {(a["audio_format"], a["audio"]) for a in assigns} == {("pcm16", PCM)}
    for assign in assigns:
        await node.send(result_for(assign, node_id))
    assert sorted([(await client.expect("translation_result"))["utterance_index"] for _ in range(3)]) == [0, 1, 2]
    await client.close()
    await node.close()


async def test_the_one_shot_pipeline_and_optional_fields_reach_the_node(server, node_token, sessions_key):
    node, _ = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    pipeline = {"use_asr": True, "use_nmt": True, "use_tts": False}
    await client.send(utterance(client.session_id, 0, pipeline=pipeline, dialect="yue", features={"emotion_detection": True}))
    assign = await node.expect("job_assign")
    assert assign["pipeline"]["use_tts"] is False
    assert (assign["dialect"], assign["features"], assign["is_manual_cut"]) == ("yue", {"emotion_detection": True}, True)
    await client.close()
    await node.close()


async def test_a_resent_utterance_is_the_same_job_and_other_audio_under_its_index_is_refused(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.send(utterance(client.session_id, 0))
    assign = await node.expect("job_assign")
    await client.send(utterance(client.session_id, 0))
    await node.send(result_for(assign, node_id))
    first, again = await client.expect("translation_result"), await client.expect("translation_result")
    assert first["job_id"] == again["job_id"] == assign["job_id"]
    await client.send(utterance(client.session_id, 0, audio=base64.b64encode(b"\x02\x00" * 100).decode()))
    refused = await client.expect("missing_result")
    assert (refused["utterance_index"], refused["reason"]) == (0, "UTTERANCE_INDEX_REUSED")
    assert [f["type"] for f in node.frames].count("job_assign") == 1
    await client.close()
    await node.close()


async def test_one_shot_audio_above_the_limit_or_not_base64_is_refused(start_session_server, sessions_key):
    server = start_session_server(SESSIONS_MAX_UTTERANCE_BYTES="4096")
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.send(utterance(client.session_id, 0, audio=base64.b64encode(b"\x00" * 5000).decode()))
    too_big = await client.expect("error")
    assert (too_big["code"], too_big["details"]["limit"]) == ("AUDIO_TOO_LARGE", 4096)
    await client.send(utterance(client.session_id, 1, audio="not base64!"))
    bad = await client.expect("error")
    assert (bad["code"], bad["details"]["field"]) == ("INVALID_MESSAGE", "audio")
    await client.close()
