"""A streamed utterance end to end: the web client's frames on a real session socket, a node over a real
socket, the translation_result back on the session."""

from __future__ import annotations

import base64

import pytest

from sessions.audio import plan_a_packets
from tests.jobs.support import REQUIRED_ASSIGN_FIELDS, capacity_in_use, ready_node, result_for
from tests.sessions.support import SessionClient, web_session_init

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_utterance_ended_by_is_final_becomes_one_job_whose_result_reaches_the_session(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    init = web_session_init()
    ack = await client.init(init)
    assert ack["session_id"].startswith("s-") and len(ack["session_id"]) == 10
    assert ack["session_id"][2:] == ack["session_id"][2:].upper()
    assert ack["trace_id"] == init["trace_id"]
    assert ack["use_binary_frame"] is False

    await client.speak(chunks=3)
    assign = await node.expect("job_assign")
    assert assign.keys() >= REQUIRED_ASSIGN_FIELDS
    assert (assign["session_id"], assign["utterance_index"]) == (ack["session_id"], 0)
    assert (assign["src_lang"], assign["tgt_lang"], assign["audio_format"], assign["sample_rate"]) == ("zh", "en", "opus", 16000)
    assert plan_a_packets(base64.b64decode(assign["audio"])) == 39, "the three chunks, concatenated"
    assert assign["padding_ms"] == 280 and assign["is_manual_cut"] is True
    assert assign["features"] == {} and assign["mode"] == "one_way"
    assert assign["trace_id"] == init["trace_id"]

    await node.send(result_for(assign, node_id))
    result = await client.expect("translation_result")
    assert result["session_id"] == ack["session_id"]
    assert result["utterance_index"] == 0
    assert result["job_id"] == assign["job_id"]
    assert (result["text_asr"], result["text_translated"]) == ("今天天气很好", "The weather is nice today")
    assert result["tts_audio"] == base64.b64encode(b"opus").decode() and result["tts_format"] == "opus"
    assert result["trace_id"] == init["trace_id"] and result["group_id"]
    assert result["timings"]["processing_time_ms"] == 12
    assert await capacity_in_use(node_id) == 0
    await client.close()
    await node.close()


async def test_utterance_indices_rise_from_zero_for_each_utterance_of_a_session(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token, max_concurrent_jobs=8)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    for _ in range(3):
        await client.speak(chunks=2)
    assigns = [await node.expect("job_assign") for _ in range(3)]
    assert sorted(a["utterance_index"] for a in assigns) == [0, 1, 2]
    for assign in assigns:
        await node.send(result_for(assign, node_id))
    results = [await client.expect("translation_result") for _ in range(3)]
    assert sorted(r["utterance_index"] for r in results) == [0, 1, 2]
    await client.close()
    await node.close()


async def test_is_final_with_nothing_buffered_creates_no_job_and_uses_no_index(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.chunk(is_final=True)
    await client.chunk(is_final=True)
    await client.speak(chunks=1)
    assign = await node.expect("job_assign")
    assert assign["utterance_index"] == 0
    await node.send(result_for(assign, node_id))
    assert (await client.expect("translation_result"))["utterance_index"] == 0
    assert [f["type"] for f in node.frames].count("job_assign") == 1
    await client.close()
    await node.close()
