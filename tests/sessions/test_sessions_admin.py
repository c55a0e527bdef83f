"""Operators see sessions: the live sessions page (from Redis) and one audit row per session (database)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from core import audit
from sessions.models import SessionRecord
from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient, two_way_session_init

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_live_page_shows_who_since_when_languages_and_utterances_of_open_sessions(
    server, node_token, sessions_key, admin_client
):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init(two_way_session_init("zh", "en"))
    await client.speak()
    assign = await node.expect("job_assign")
    assert (assign["src_lang"], assign["tgt_lang"], assign["lang_a"], assign["lang_b"]) == ("auto", "en", "zh", "en")
    assert assign["mode"] == "two_way_auto" and assign["auto_langs"] == ["zh", "en"]

    async def page() -> str:
        return (await sync_to_async(admin_client.get, thread_sensitive=False)("/admin/sessions/live/")).content.decode()

    html = ""
    for _ in range(60):  # the session publishes its counters at most once a second
        html = await page()
        if "<td>1</td><td>1</td>" in html:
            break
        await asyncio.sleep(0.1)
    assert client.session_id in html
    assert "zh ⇄ en" in html and "web web-client-v1.0" in html
    assert "<td>1</td><td>1</td>" in html, "one utterance, one in flight"
    await node.send(result_for(assign, node_id))
    await client.expect("translation_result")
    await client.close()
    await node.close()


async def test_a_closed_session_leaves_one_audit_row_with_its_counts(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init()
    await client.speak()
    await node.send(result_for(await node.expect("job_assign"), node_id))
    await client.expect("translation_result")
    await client.send({"type": "session_close", "session_id": client.session_id, "reason": "user_left"})
    await client.expect("session_close_ack")
    await client.close()
    await node.close()
    await sync_to_async(audit.write_batch, thread_sensitive=False)()
    row = await SessionRecord.objects.aget(session_id=client.session_id)
    assert (row.platform, row.client_version, row.src_lang, row.tgt_lang) == ("web", "web-client-v1.0", "zh", "en")
    assert (row.utterances, row.results, row.missing, row.close_reason) == (1, 1, 0, "user_left")
    assert row.api_key_id == sessions_key.partition(".")[0]
    assert row.closed_at is not None and row.closed_at >= row.opened_at
