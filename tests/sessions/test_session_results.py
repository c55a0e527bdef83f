"""What the session receives for its utterances: partials relayed, every field of translation_result,
missing_result for utterances without a result, results in the order they come, from any instance."""

from __future__ import annotations

import pytest

from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient

pytestmark = pytest.mark.django_db(transaction=True)


def partial(assign: dict, node_id: str, text: str, is_final: bool) -> dict:
    return {"type": "asr_partial", "job_id": assign["job_id"], "node_id": node_id, "text": text, "is_final": is_final}


async def test_asr_partials_are_relayed_in_order_before_the_translation_result(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign")
    await node.send(partial(assign, node_id, "今天", False))
    first = await client.expect("asr_partial")
    assert (first["utterance_index"], first["text"], first["is_final"]) == (0, "今天", False)
    assert first["session_id"] == client.session_id and first["trace_id"] == assign["trace_id"]
    await node.send(partial(assign, node_id, "今天天气很好", True))
    second = await client.expect("asr_partial")
    assert (second["text"], second["is_final"]) == ("今天天气很好", True)
    await node.send(result_for(assign, node_id))
    await client.expect("translation_result")
    assert [f["type"] for f in client.frames] == ["session_init_ack", "asr_partial", "asr_partial", "translation_result"]
    await client.close()
    await node.close()


async def test_the_node_extras_reach_the_client_in_translation_result(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign")
    extra = {"group_id": "group_from_node", "part_index": 2, "quality_score": 0.91, "service_timings": {"asr_ms": 40}}
    await node.send(result_for(assign, node_id, extra=extra))
    result = await client.expect("translation_result")
    assert (result["group_id"], result["part_index"], result["quality_score"]) == ("group_from_node", 2, 0.91)
    assert result["service_timings"] == {"asr_ms": 40}
    assert {"created_at", "dispatched_at", "ended_at"} <= result["timings"].keys()
    assert isinstance(result["scheduler_sent_at_ms"], int)
    await client.close()
    await node.close()


async def test_a_failed_utterance_gets_missing_result_with_the_reason_and_no_error_frame(start_session_server, node_token, sessions_key):
    server = start_session_server(JOB_MAX_ATTEMPTS="1")
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign")
    await node.send(result_for(assign, node_id, success=False, error={"code": "PROCESSING_ERROR", "message": "ASR crashed"}))
    missing = await client.expect("missing_result")
    assert (missing["utterance_index"], missing["reason"], missing["job_id"]) == (0, "NODE_ERROR", assign["job_id"])
    assert missing["session_id"] == client.session_id and isinstance(missing["created_at_ms"], int)
    assert "error" not in [f["type"] for f in client.frames], "the web client shows every error as a blocking alert"
    await client.close()
    await node.close()


async def test_a_result_with_no_text_and_no_audio_is_reported_as_missing(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign")
    await node.send(result_for(assign, node_id, text_asr="", text_translated="", tts_audio=""))
    missing = await client.expect("missing_result")
    assert (missing["utterance_index"], missing["reason"]) == (0, "silence_detected")
    await client.close()
    await node.close()


async def test_results_are_sent_as_they_come_a_later_utterance_does_not_wait_for_an_earlier_one(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token, max_concurrent_jobs=4)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    await client.speak()
    assigns = {a["utterance_index"]: a for a in [await node.expect("job_assign"), await node.expect("job_assign")]}
    await node.send(result_for(assigns[1], node_id))
    assert (await client.expect("translation_result"))["utterance_index"] == 1
    await node.send(result_for(assigns[0], node_id))
    assert (await client.expect("translation_result"))["utterance_index"] == 0
    await client.close()
    await node.close()


async def test_a_result_reaches_the_session_on_its_instance_when_the_node_is_on_another(start_session_server, node_token, sessions_key):
    a, b = start_session_server(), start_session_server()
    node, node_id = await ready_node(b, node_token)
    client = await SessionClient.connect(a.ws_url, sessions_key)
    await client.init()
    await client.speak()
    assign = await node.expect("job_assign")
    await node.send(partial(assign, node_id, "今天", False))
    assert (await client.expect("asr_partial"))["text"] == "今天"
    await node.send(result_for(assign, node_id))
    result = await client.expect("translation_result")
    assert result["job_id"] == assign["job_id"]
    await client.close()
    await node.close()


async def test_a_node_that_dies_mid_utterance_is_replaced_and_the_session_still_gets_its_result(
    start_session_server, node_token, sessions_key
):
    server = start_session_server(NODE_HEARTBEAT_TIMEOUT_S="60")
    first, _ = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    await first.expect("job_assign")
    second, second_id = await ready_node(server, node_token)
    await first.close()  # socket gone: the node is offline and its attempt ends NODE_OFFLINE
    retry = await second.expect("job_assign")
    assert (retry["attempt_id"], retry["utterance_index"]) == (2, 0)
    await second.send(result_for(retry, second_id))
    assert (await client.expect("translation_result"))["job_id"] == retry["job_id"]
    await client.close()
    await second.close()
