"""`two_way_auto`: the node detects which of the two languages was spoken; the job says `src_lang: auto`."""

from __future__ import annotations

import pytest

from tests.jobs.support import ready_node, result_for
from tests.sessions.support import SessionClient, two_way_session_init, web_session_init

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_two_way_session_sends_auto_with_both_languages_to_a_node_of_their_pool(server, node_token, sessions_key):
    node, node_id = await ready_node(server, node_token)
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.init(two_way_session_init("zh", "en"))
    await client.speak()
    assign = await node.expect("job_assign")
    assert (assign["src_lang"], assign["tgt_lang"]) == ("auto", "en")
    assert (assign["mode"], assign["lang_a"], assign["lang_b"], assign["auto_langs"]) == ("two_way_auto", "zh", "en", ["zh", "en"])
    await node.send(result_for(assign, node_id))
    assert (await client.expect("translation_result"))["utterance_index"] == 0
    await client.close()
    await node.close()


async def test_two_way_without_both_languages_is_refused(server, sessions_key):
    client = await SessionClient.connect(server.ws_url, sessions_key)
    await client.send(web_session_init(src_lang="auto", mode="two_way_auto", lang_a="zh"))
    refusal = await client.expect("error")
    assert (refusal["code"], refusal["details"]["field"]) == ("INVALID_MESSAGE", "lang_a")
    await client.close()
