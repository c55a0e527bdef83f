"""A session's API key (in its URL, as the web client sends it) and its audio never reach a log line."""

from __future__ import annotations

import pytest
import websockets

from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient, opus_chunk

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_key_in_the_session_url_and_the_audio_are_not_in_the_server_log(start_session_server, node_token, sessions_key):
    server = start_session_server(LOG_LEVEL="DEBUG", ACCESS_LOG="true")
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    payload = opus_chunk(fill=0x5A)
    await client.chunk(payload)
    await client.chunk(is_final=True)
    await node.send(result_for(await node.expect("job_assign"), node_id))
    await client.expect("translation_result")
    await client.close()
    refused = sessions_key.partition(".")[0] + ".not-the-secret-at-all"
    with pytest.raises(websockets.InvalidStatus):
        await SessionClient.connect(server.ws_url, refused)
    await node.close()

    log = server.log_text()
    assert client.session_id in log and "WSCONNECT /ws/session" in log, "the log recorded this session"
    assert sessions_key.partition(".")[0] in log, "a refused key is named by its public id"
    for secret in (sessions_key.partition(".")[2], "not-the-secret-at-all", payload[:40]):
        assert secret not in log
